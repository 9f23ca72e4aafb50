//! Blocking: which records are worth comparing at all.
//!
//! Every record emits a few blocking keys (phone; full address; name sound with birth date;
//! name with road or village; name sound with district; id-number prefix; the identifier
//! itself). Two records are candidates when they share a key. A key held by more records
//! than its kind's cap is skipped, and the caps are per kind of key: a phone shared by forty
//! people or the name 张伟 across a county says little, and skipping such blocks keeps the
//! candidate pairs linear in the number of records.

use std::collections::HashMap;

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
pub fn keys_of(recs: &Records, r: usize, out: &mut Vec<u64>) {
    out.clear();
    if recs.phone[r] != 0 {
        out.push(key(KeyKind::Phone, recs.phone[r]));
    }
    if recs.addr_full[r] != 0 {
        out.push(key(KeyKind::Address, recs.addr_full[r]));
    }
    for name in [recs.name[r], recs.alt_name[r]] {
        if name == NONE {
            continue;
        }
        let sound = recs.names.sound[name as usize];
        if recs.birth[r] != NO_DATE {
            out.push(key(
                KeyKind::SoundBirth,
                sound ^ mix(recs.birth[r] as u64 ^ 0x55),
            ));
        }
        let area = if recs.addr_area[r] != 0 {
            recs.addr_area[r]
        } else {
            recs.addr_building[r]
        };
        if area != 0 {
            out.push(key(KeyKind::NameArea, u64::from(name) ^ mix(area)));
        }
        if recs.district[r] != 0 {
            out.push(key(
                KeyKind::SoundDistrict,
                sound ^ mix(u64::from(recs.district[r]) ^ 0xD1),
            ));
        }
    }
    if recs.id[r] != NONE {
        let id = recs.ids.text(recs.id[r]).as_bytes();
        // Local keys only mean something within their own source.
        let seed = if recs.id_state[r] == IdState::Local {
            u64::from(recs.source[r]) + 1
        } else {
            0
        };
        out.push(key(
            KeyKind::Id,
            xxhash_rust::xxh3::xxh3_64_with_seed(id, seed),
        ));
        if matches!(recs.id_state[r], IdState::Key | IdState::BrokenPid) && id.len() == 18 {
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

/// Blocking keys are already well mixed: hash them as they are.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b) ^ (self.0 >> 56);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type KeyMap = HashMap<u64, (u32, u32), std::hash::BuildHasherDefault<KeyHasher>>;

/// Blocking keys of a set of records: (key, record) pairs sorted by key, and each key's
/// range within its cap (one hash probe per lookup instead of a binary search through
/// memory).
#[derive(Debug, Default)]
pub struct BlockIndex {
    entries: Vec<(u64, u32)>,
    ranges: KeyMap,
    /// Blocks skipped for being over their cap, and pairs they would have made.
    pub skipped_blocks: usize,
}

impl BlockIndex {
    /// Indexes the given records.
    pub fn build(recs: &Records, members: impl Iterator<Item = usize>) -> BlockIndex {
        let mut entries = Vec::new();
        let mut buf = Vec::new();
        for r in members {
            keys_of(recs, r, &mut buf);
            entries.extend(buf.iter().map(|&k| (k, r as u32)));
        }
        entries.sort_unstable();
        let mut skipped = 0;
        let mut ranges = KeyMap::default();
        let mut i = 0;
        while i < entries.len() {
            let k = entries[i].0;
            let mut j = i + 1;
            while j < entries.len() && entries[j].0 == k {
                j += 1;
            }
            if j - i > KeyKind::from_tag(k & 7).cap() {
                skipped += 1;
            } else if j - i >= 1 {
                ranges.insert(k, (i as u32, (j - i) as u32));
            }
            i = j;
        }
        BlockIndex {
            entries,
            ranges,
            skipped_blocks: skipped,
        }
    }

    /// The records sharing `key`, or nothing when the block is over its cap.
    pub fn block(&self, key: u64) -> &[(u64, u32)] {
        match self.ranges.get(&key) {
            Some(&(s, n)) => &self.entries[s as usize..(s + n) as usize],
            None => &[],
        }
    }

    /// Calls `f` for every record sharing a block with record `r` (possibly repeatedly).
    pub fn for_each_candidate(
        &self,
        recs: &Records,
        r: usize,
        buf: &mut Vec<u64>,
        mut f: impl FnMut(usize),
    ) {
        keys_of(recs, r, buf);
        for &k in buf.iter() {
            for &(_, s) in self.block(k) {
                f(s as usize);
            }
        }
    }

    /// Every block within its cap, as slices of record indices (for pairwise clustering).
    pub fn blocks(&self) -> impl Iterator<Item = &[(u64, u32)]> {
        let mut i = 0;
        std::iter::from_fn(move || {
            while i < self.entries.len() {
                let k = self.entries[i].0;
                let j = i + self.entries[i..].partition_point(|e| e.0 == k);
                let s = &self.entries[i..j];
                i = j;
                if s.len() >= 2 && s.len() <= KeyKind::from_tag(k & 7).cap() {
                    return Some(s);
                }
            }
            None
        })
    }

    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * 16 + self.ranges.capacity() * 17
    }
}
