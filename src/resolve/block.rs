//! Blocking: which records are worth comparing at all.
//!
//! Every record emits a few blocking keys (phone; full address; name sound with birth date;
//! name with road or village; name sound with district; id-number prefix; the identifier
//! itself). Two records are candidates when they share a key. A key held by more records
//! than its kind's cap is skipped, and the caps are per kind of key: a phone shared by forty
//! people or the name 张伟 across a county says little, and skipping such blocks keeps the
//! candidate pairs linear in the number of records.

use rayon::prelude::*;

use super::records::{IdState, NO_DATE, NONE, Records};

/// Kinds of blocking key, with their caps (records per block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Phone = 1,
    Address = 2,
    SoundBirth = 3,
    NameArea = 4,
    SoundDistrict = 5,
    IdPrefix = 6,
    Id = 7,
}

impl KeyKind {
    pub fn cap(self) -> usize {
        match self {
            KeyKind::Phone => 24,
            KeyKind::Address => 48,
            KeyKind::SoundBirth => 48,
            KeyKind::NameArea => 48,
            KeyKind::SoundDistrict => 96,
            KeyKind::IdPrefix => 96,
            KeyKind::Id => 48,
        }
    }

    fn from_tag(t: u64) -> KeyKind {
        match t {
            1 => KeyKind::Phone,
            2 => KeyKind::Address,
            3 => KeyKind::SoundBirth,
            4 => KeyKind::NameArea,
            5 => KeyKind::SoundDistrict,
            6 => KeyKind::IdPrefix,
            _ => KeyKind::Id,
        }
    }
}

/// A blocking key: 61 bits of fingerprint, 3 bits of kind.
fn key(kind: KeyKind, v: u64) -> u64 {
    (mix(v ^ (kind as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) & !7) | kind as u64
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The blocking keys of one record.
pub fn keys_of(recs: &Records, r: usize, side: Side, out: &mut Vec<u64>) {
    out.clear();
    if recs.f[r].phone != 0 {
        out.push(key(KeyKind::Phone, recs.f[r].phone));
    }
    if recs.f[r].addr_full != 0 {
        out.push(key(KeyKind::Address, recs.f[r].addr_full));
    }
    for name in [recs.f[r].name, recs.f[r].alt_name] {
        if name == NONE {
            continue;
        }
        let sound = recs.names.sound[name as usize];
        if recs.f[r].birth != NO_DATE {
            out.push(key(
                KeyKind::SoundBirth,
                sound ^ mix(u64::from(recs.f[r].birth) ^ 0x55),
            ));
        }
        let area = if recs.f[r].addr_area != 0 {
            recs.f[r].addr_area
        } else {
            recs.f[r].addr_building
        };
        if area != 0 {
            out.push(key(KeyKind::NameArea, u64::from(name) ^ mix(area)));
        }
        if recs.f[r].district != 0 {
            out.push(key(
                KeyKind::SoundDistrict,
                sound ^ mix(u64::from(recs.f[r].district) ^ 0xD1),
            ));
        }
    }
    if recs.f[r].id != NONE {
        let id = recs.ids.text(recs.f[r].id).as_bytes();
        // Local keys only mean something within their own source.
        let seed = if recs.f[r].id_state == IdState::Local {
            u64::from(recs.f[r].source) + 1
        } else {
            0
        };
        if side == Side::Keyless {
            out.push(key(
                KeyKind::Id,
                xxhash_rust::xxh3::xxh3_64_with_seed(id, seed),
            ));
        }
        if matches!(recs.f[r].id_state, IdState::Key | IdState::BrokenPid) && id.len() == 18 {
            // Division and birth date: a typo in the sequence or check digits stays here.
            out.push(key(
                KeyKind::IdPrefix,
                xxhash_rust::xxh3::xxh3_64(&id[..14]),
            ));
        }
    }
    out.sort_unstable();
    out.dedup();
}

/// Which records an index holds, which decides the keys worth emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Keyed records: a keyless record never shares a valid identifier exactly (one edit
    /// away is found by enumeration), so no whole-identifier key; the id-number prefix
    /// (division and birth date) stays.
    Keyed,
    /// Records without a key, compared among themselves: identifier keys too.
    Keyless,
}

/// Blocking keys of a set of records, compactly: the distinct keys sorted, each with its
/// records, and a bucket table on the keys' top bits so that a lookup is one or two cache
/// misses instead of a binary search through memory. Blocks over their cap are dropped at
/// build time.
#[derive(Debug, Default)]
pub struct BlockIndex {
    /// Distinct keys within their cap, sorted.
    keys: Vec<u64>,
    /// Records of key `i`: `records[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    records: Vec<u32>,
    /// Keys whose top `shift`-complement bits are `b` are `keys[buckets[b]..buckets[b + 1]]`.
    buckets: Vec<u32>,
    shift: u32,
    /// Blocks skipped for being over their cap.
    pub skipped_blocks: usize,
}

impl BlockIndex {
    /// Indexes the given records.
    pub fn build(recs: &Records, members: impl Iterator<Item = usize>, side: Side) -> BlockIndex {
        let members: Vec<usize> = members.collect();
        let mut entries: Vec<(u64, u32)> = members
            .par_chunks(1 << 14)
            .flat_map_iter(|chunk| {
                let mut out = Vec::with_capacity(chunk.len() * 6);
                let mut buf = Vec::new();
                for &r in chunk {
                    keys_of(recs, r, side, &mut buf);
                    out.extend(buf.iter().map(|&k| (k, r as u32)));
                }
                out
            })
            .collect();
        drop(members);
        entries.par_sort_unstable();
        let mut idx = BlockIndex::default();
        let mut i = 0;
        while i < entries.len() {
            let k = entries[i].0;
            let mut j = i + 1;
            while j < entries.len() && entries[j].0 == k {
                j += 1;
            }
            if j - i > KeyKind::from_tag(k & 7).cap() {
                idx.skipped_blocks += 1;
            } else {
                idx.keys.push(k);
                idx.starts.push(idx.records.len() as u32);
                idx.records.extend(entries[i..j].iter().map(|e| e.1));
            }
            i = j;
        }
        drop(entries);
        idx.starts.push(idx.records.len() as u32);
        // About two keys per bucket.
        let bits = (usize::BITS - (idx.keys.len() / 2).max(1).leading_zeros()).min(28);
        idx.shift = 64 - bits;
        let nb = 1usize << bits;
        idx.buckets = vec![0; nb + 1];
        for &k in &idx.keys {
            idx.buckets[(k >> idx.shift) as usize + 1] += 1;
        }
        for b in 0..nb {
            idx.buckets[b + 1] += idx.buckets[b];
        }
        idx.keys.shrink_to_fit();
        idx.records.shrink_to_fit();
        idx
    }

    /// The records sharing `key` (nothing when the block was over its cap).
    pub fn block(&self, key: u64) -> &[u32] {
        if self.keys.is_empty() {
            return &[];
        }
        let b = (key >> self.shift) as usize;
        let (s, e) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        match self.keys[s..e].iter().position(|&k| k == key) {
            Some(p) => {
                let i = s + p;
                &self.records[self.starts[i] as usize..self.starts[i + 1] as usize]
            }
            None => &[],
        }
    }

    /// Calls `f` for every indexed record sharing a block with record `r` (possibly
    /// repeatedly); `side` says which keys `r` emits.
    pub fn for_each_candidate(
        &self,
        recs: &Records,
        r: usize,
        side: Side,
        buf: &mut Vec<u64>,
        mut f: impl FnMut(usize),
    ) {
        keys_of(recs, r, side, buf);
        for &k in buf.iter() {
            for &s in self.block(k) {
                f(s as usize);
            }
        }
    }

    /// Every block of two or more records, as slices of record indices.
    pub fn blocks(&self) -> impl Iterator<Item = &[u32]> {
        (0..self.keys.len())
            .map(|i| &self.records[self.starts[i] as usize..self.starts[i + 1] as usize])
            .filter(|b| b.len() >= 2)
    }

    pub fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 8
            + self.starts.capacity() * 4
            + self.records.capacity() * 4
            + self.buckets.capacity() * 4
    }
}
