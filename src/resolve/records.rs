//! Identity records as resolution sees them: one compact row of features per record, read from
//! the normalized segments ingest wrote.
//!
//! A source's columns are found by their roles (the source config travels in the segment's
//! metadata), so any identity table resolves, not only the generator's. Strings that repeat
//! (names, identifiers) are interned once; phones and addresses become 64-bit fingerprints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pinyin::ToPinyin;
use rayon::prelude::*;
use xxhash_rust::xxh3::{Xxh3DefaultBuilder, xxh3_64, xxh3_64_with_seed};

use crate::error::ResolveError;
use crate::ids::{PidStatus, UsccStatus};
use crate::ingest::segment::{ColumnType, Segment};
use crate::source::config::{Role, SourceConfig, Subject, TableKind};

/// "No value" for the interned-index columns.
pub const NONE: u32 = u32::MAX;
/// "No date".
pub const NO_DATE: i32 = i32::MIN;

/// What kind of entity a record can belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    Person = 0,
    Enterprise = 1,
    Household = 2,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Enterprise => "enterprise",
            Kind::Household => "household",
        }
    }

    /// The prefix of keys minted for entities of this kind that have no identifier.
    pub fn mint_prefix(self) -> &'static str {
        match self {
            Kind::Person => "P",
            Kind::Enterprise => "E",
            Kind::Household => "H",
        }
    }
}

/// The state of a record's own identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IdState {
    /// No identifier.
    None = 0,
    /// A valid id number, USCC or household number: a deterministic key.
    Key = 1,
    /// A person id number that failed its checks: evidence, not a key.
    BrokenPid = 2,
    /// A USCC that failed its check: evidence, not a key.
    BrokenUscc = 3,
    /// A source-local identifier (a benchmark file's id column): evidence only.
    Local = 4,
    /// A legacy enterprise registration number (注册号): the same enterprise may carry a USCC
    /// elsewhere, so it is evidence, compared only with other registration numbers.
    RegNo = 5,
}

/// One identity source.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub name: String,
    pub subject: Subject,
    /// First record of the source in [`Records`].
    pub first: u32,
    pub len: u32,
}

/// Interned strings with per-string counts (how many records carry each).
#[derive(Debug, Default)]
pub struct Interner {
    index: HashMap<u64, u32, Xxh3DefaultBuilder>,
    offsets: Vec<u32>,
    text: String,
    pub count: Vec<u32>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        let h = xxh3_64(s.as_bytes());
        if let Some(&i) = self.index.get(&h) {
            self.count[i as usize] += 1;
            return i;
        }
        let i = self.count.len() as u32;
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.text.push_str(s);
        self.offsets.push(self.text.len() as u32);
        self.count.push(1);
        self.index.insert(h, i);
        i
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.index.get(&xxh3_64(s.as_bytes())).copied()
    }

    pub fn text(&self, i: u32) -> &str {
        let i = i as usize;
        &self.text[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    pub fn len(&self) -> usize {
        self.count.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.index.capacity() * 16
            + self.offsets.capacity() * 4
            + self.text.capacity()
            + self.count.capacity() * 4
    }
}

/// Names: interned text plus what comparison needs of each distinct name.
#[derive(Debug, Default)]
pub struct Names {
    pub strings: Interner,
    /// Fingerprint of the name's sound: toneless pinyin for Chinese characters, a simple
    /// consonant skeleton for Latin letters. Homophones (张伟/章伟) share it.
    pub sound: Vec<u64>,
}

impl Names {
    pub fn intern(&mut self, s: &str) -> u32 {
        let before = self.strings.len();
        let i = self.strings.intern(s);
        if self.strings.len() > before {
            self.sound.push(sound_of(s));
        }
        i
    }

    pub fn text(&self, i: u32) -> &str {
        self.strings.text(i)
    }
}

/// The sound fingerprint of a name.
pub fn sound_of(name: &str) -> u64 {
    let mut key = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        if let Some(p) = c.to_pinyin() {
            key.push_str(p.plain());
            key.push(' ');
        } else if c.is_ascii_alphabetic() {
            let l = c.to_ascii_lowercase();
            // A consonant skeleton: the first letter kept, vowels and h/w/y dropped after it,
            // doubled letters collapsed (smith/smyth, jon/john).
            let first = key.is_empty() || key.ends_with(' ');
            let drop = !first && matches!(l, 'a' | 'e' | 'i' | 'o' | 'u' | 'y' | 'h' | 'w');
            if !drop && !key.ends_with(l) {
                key.push(l);
            }
        } else if c == ' ' {
            if !key.ends_with(' ') {
                key.push(' ');
            }
        } else {
            key.push(c);
        }
    }
    xxh3_64(key.as_bytes())
}

/// Every identity record's features, as parallel columns.
#[derive(Debug, Default)]
pub struct Records {
    pub sources: Vec<SourceInfo>,
    pub source: Vec<u16>,
    /// Kinds the record may belong to, as a bit set of `1 << Kind`.
    pub kinds: Vec<u8>,
    pub id_state: Vec<IdState>,
    /// The identifier (key or evidence), interned in `ids`.
    pub id: Vec<u32>,
    /// The subject's name; for enterprises, the registered name.
    pub name: Vec<u32>,
    /// A second name the subject answers to: an enterprise's legal representative.
    pub alt_name: Vec<u32>,
    pub birth: Vec<i32>,
    /// 0 unknown, 1 male, 2 female.
    pub gender: Vec<u8>,
    /// Fingerprint of the normalized phone, 0 when missing.
    pub phone: Vec<u64>,
    /// Address fingerprints: the full address (down to the room), the building (estate or
    /// village and building, or road and number), the area (district and road, village or
    /// estate). 0 when missing.
    pub addr_full: Vec<u64>,
    pub addr_building: Vec<u64>,
    pub addr_area: Vec<u64>,
    /// District or county fingerprint, 0 when unknown.
    pub district: Vec<u32>,
    record_id_offsets: Vec<u32>,
    record_id_text: String,
    pub ids: Interner,
    pub names: Names,
}

impl Records {
    pub fn len(&self) -> usize {
        self.source.len()
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    pub fn record_id(&self, r: usize) -> &str {
        &self.record_id_text
            [self.record_id_offsets[r] as usize..self.record_id_offsets[r + 1] as usize]
    }

    pub fn source_name(&self, r: usize) -> &str {
        &self.sources[self.source[r] as usize].name
    }

    pub fn id_text(&self, r: usize) -> Option<&str> {
        (self.id[r] != NONE).then(|| self.ids.text(self.id[r]))
    }

    pub fn name_text(&self, r: usize) -> Option<&str> {
        (self.name[r] != NONE).then(|| self.names.text(self.name[r]))
    }

    /// Bytes held by the feature columns and interners.
    pub fn heap_bytes(&self) -> usize {
        let n = self.source.capacity();
        n * (2 + 1 + 1 + 4 + 4 + 4 + 4 + 1 + 8 + 8 + 8 + 8 + 4 + 4)
            + self.record_id_text.capacity()
            + self.ids.heap_bytes()
            + self.names.strings.heap_bytes()
            + self.names.sound.capacity() * 8
    }

    /// Reads every identity segment under `segments`, in file-name order.
    pub fn load(segments: &Path) -> Result<Records, ResolveError> {
        let paths = segment_paths(segments)?;
        let loaded: Vec<Option<Loaded>> = paths
            .par_iter()
            .map(|p| load_source(p))
            .collect::<Result<_, _>>()?;
        let mut recs = Records::default();
        let total: usize = loaded.iter().flatten().map(|l| l.rows).sum();
        recs.reserve(total);
        for l in loaded.into_iter().flatten() {
            recs.append(l);
        }
        Ok(recs)
    }

    fn reserve(&mut self, n: usize) {
        self.source.reserve_exact(n);
        self.kinds.reserve_exact(n);
        self.id_state.reserve_exact(n);
        self.id.reserve_exact(n);
        self.name.reserve_exact(n);
        self.alt_name.reserve_exact(n);
        self.birth.reserve_exact(n);
        self.gender.reserve_exact(n);
        self.phone.reserve_exact(n);
        self.addr_full.reserve_exact(n);
        self.addr_building.reserve_exact(n);
        self.addr_area.reserve_exact(n);
        self.district.reserve_exact(n);
        self.record_id_offsets.reserve_exact(n + 1);
    }

    fn append(&mut self, l: Loaded) {
        let src = self.sources.len() as u16;
        let first = self.len() as u32;
        self.sources.push(SourceInfo {
            name: l.source_name,
            subject: l.subject,
            first,
            len: l.rows as u32,
        });
        if self.record_id_offsets.is_empty() {
            self.record_id_offsets.push(0);
        }
        for i in 0..l.rows {
            self.source.push(src);
            self.kinds.push(l.kinds[i]);
            self.id_state.push(l.id_state[i]);
            let s = l.strings.text(l.id[i]);
            self.id.push(if l.id[i] == NONE || s.is_empty() {
                NONE
            } else {
                self.ids.intern(s)
            });
            let mut name = |n: u32| {
                if n == NONE {
                    NONE
                } else {
                    self.names.intern(l.strings.text(n))
                }
            };
            let (nm, alt) = (name(l.name[i]), name(l.alt_name[i]));
            self.name.push(nm);
            self.alt_name.push(alt);
            self.birth.push(l.birth[i]);
            self.gender.push(l.gender[i]);
            self.phone.push(l.phone[i]);
            self.addr_full.push(l.addr[i][0]);
            self.addr_building.push(l.addr[i][1]);
            self.addr_area.push(l.addr[i][2]);
            self.district.push(l.district[i]);
            self.record_id_text.push_str(l.strings.text(l.record_id[i]));
            self.record_id_offsets
                .push(self.record_id_text.len() as u32);
        }
    }
}

/// The `.seg` files of a folder, in file-name order.
pub fn segment_paths(dir: &Path) -> Result<Vec<PathBuf>, ResolveError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ResolveError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// One source's records before interning into the shared tables.
#[derive(Debug, Default)]
struct Loaded {
    source_name: String,
    subject: Subject,
    rows: usize,
    kinds: Vec<u8>,
    id_state: Vec<IdState>,
    id: Vec<u32>,
    name: Vec<u32>,
    alt_name: Vec<u32>,
    birth: Vec<i32>,
    gender: Vec<u8>,
    phone: Vec<u64>,
    addr: Vec<[u64; 3]>,
    district: Vec<u32>,
    record_id: Vec<u32>,
    /// Local strings (names, ids, record ids), not deduplicated.
    strings: LocalStrings,
}

#[derive(Debug, Default)]
struct LocalStrings {
    offsets: Vec<u32>,
    text: String,
}

impl LocalStrings {
    fn push(&mut self, s: &str) -> u32 {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.text.push_str(s);
        self.offsets.push(self.text.len() as u32);
        (self.offsets.len() - 2) as u32
    }
    fn text(&self, i: u32) -> &str {
        if i == NONE {
            return "";
        }
        let i = i as usize;
        &self.text[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// Reads a string column into `strings`, setting `ids[row]` for every non-empty value.
fn read_strings(
    seg: &Segment,
    column: &str,
    strings: &mut LocalStrings,
    ids: &mut [u32],
) -> Result<(), crate::error::SegmentError> {
    seg.for_each_str(column, |r, v| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            ids[r] = strings.push(v);
        }
    })
}

fn col_of(config: &SourceConfig, roles: &[Role]) -> Option<String> {
    config
        .columns
        .iter()
        .find(|c| roles.contains(&c.role))
        .map(|c| c.name.clone())
}

fn cols_of(config: &SourceConfig, role: Role) -> Vec<String> {
    config
        .columns
        .iter()
        .filter(|c| c.role == role)
        .map(|c| c.name.clone())
        .collect()
}

fn seg_err(path: &Path) -> impl Fn(crate::error::SegmentError) -> ResolveError + '_ {
    move |e| ResolveError::Segment {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Reads one segment if it is an identity table; `None` for the others.
fn load_source(path: &Path) -> Result<Option<Loaded>, ResolveError> {
    let seg = Segment::open(path).map_err(seg_err(path))?;
    let Some(toml) = seg.meta("config") else {
        return Err(ResolveError::Input(format!(
            "{} has no source config in its metadata; re-ingest it",
            path.display()
        )));
    };
    let config =
        SourceConfig::from_toml(toml, path).map_err(|e| ResolveError::Input(e.to_string()))?;
    if config.kind != TableKind::Identity {
        return Ok(None);
    }
    let n = seg.rows() as usize;
    let err = seg_err(path);
    let mut l = Loaded {
        source_name: config.source_name(),
        subject: config.subject,
        rows: n,
        kinds: vec![0; n],
        id_state: vec![IdState::None; n],
        id: vec![NONE; n],
        name: vec![NONE; n],
        alt_name: vec![NONE; n],
        birth: vec![NO_DATE; n],
        gender: vec![0; n],
        phone: vec![0; n],
        addr: vec![[0; 3]; n],
        district: vec![0; n],
        record_id: vec![NONE; n],
        ..Loaded::default()
    };
    let base_kinds = match config.subject {
        Subject::Person => 1 << Kind::Person as u8,
        Subject::Enterprise => 1 << Kind::Enterprise as u8,
        Subject::Household => 1 << Kind::Household as u8,
        Subject::Party => (1 << Kind::Person as u8) | (1 << Kind::Enterprise as u8),
        Subject::Other => return Ok(None),
    };
    l.kinds.fill(base_kinds);

    // Record ids: the record-id column, else the line number.
    match col_of(&config, &[Role::RecordId]) {
        Some(c) => {
            let (strings, ids) = (&mut l.strings, &mut l.record_id);
            seg.for_each_str(&c, |r, v| ids[r] = strings.push(v.unwrap_or("")))
                .map_err(&err)?;
        }
        None => {
            let lines = seg.ints("_line").map_err(&err)?;
            for (r, v) in lines.into_iter().enumerate() {
                l.record_id[r] = l.strings.push(&v.unwrap_or(0).to_string());
            }
        }
    }

    // The subject's identifier.
    let id_col = match config.subject {
        Subject::Person => col_of(&config, &[Role::PersonId]),
        Subject::Enterprise => col_of(&config, &[Role::EnterpriseId]),
        Subject::Party => col_of(&config, &[Role::PartyId]),
        Subject::Household => col_of(&config, &[Role::RecordId]),
        Subject::Other => None,
    };
    let status_col = id_col.as_ref().map(|c| format!("{c}.status"));
    let has_status = status_col
        .as_ref()
        .is_some_and(|s| seg.schema().iter().any(|c| &c.name == s));
    if let Some(c) = &id_col {
        read_strings(&seg, c, &mut l.strings, &mut l.id).map_err(&err)?;
        if config.subject == Subject::Household {
            for r in 0..n {
                if l.id[r] != NONE {
                    l.id_state[r] = IdState::Key;
                }
            }
        }
    }
    if let (Some(s), true) = (&status_col, has_status) {
        let kind_col = format!("{}.kind", id_col.as_deref().unwrap_or(""));
        let states = &mut l.id_state;
        let subject = config.subject;
        seg.for_each_str(s, |r, v| {
            states[r] = id_state_of(v.unwrap_or("missing"), subject);
        })
        .map_err(&err)?;
        if seg.schema().iter().any(|c| c.name == kind_col) {
            let kinds = &mut l.kinds;
            let states = &mut l.id_state;
            seg.for_each_str(&kind_col, |r, v| match v {
                Some("person") => {
                    kinds[r] = 1 << Kind::Person as u8;
                    if states[r] == IdState::BrokenUscc {
                        states[r] = IdState::BrokenPid;
                    }
                }
                Some("enterprise") => {
                    kinds[r] = 1 << Kind::Enterprise as u8;
                    if states[r] == IdState::BrokenPid {
                        states[r] = IdState::BrokenUscc;
                    }
                }
                _ => {}
            })
            .map_err(&err)?;
        }
        for r in 0..n {
            if l.id_state[r] == IdState::None {
                l.id[r] = NONE;
            }
        }
    } else if id_col.is_none() {
        // No subject identifier: a local key column is still evidence.
        if let Some(c) = col_of(&config, &[Role::Key]) {
            read_strings(&seg, &c, &mut l.strings, &mut l.id).map_err(&err)?;
            for r in 0..n {
                if l.id[r] != NONE {
                    l.id_state[r] = IdState::Local;
                }
            }
        }
    }

    // Names: the subject's own name, and for enterprises the representative's.
    let (name_col, alt_col) = match config.subject {
        Subject::Enterprise => (
            col_of(&config, &[Role::OrgName]),
            col_of(&config, &[Role::Name]),
        ),
        _ => (col_of(&config, &[Role::Name, Role::OrgName]), None),
    };
    if let Some(c) = name_col {
        read_strings(&seg, &c, &mut l.strings, &mut l.name).map_err(&err)?;
    } else {
        // Surname and given name in separate columns (benchmark files).
        let (sur, given) = (
            cols_of(&config, Role::Surname),
            cols_of(&config, Role::GivenName),
        );
        if !sur.is_empty() || !given.is_empty() {
            let mut parts: Vec<Vec<Option<String>>> = Vec::new();
            for c in given.iter().chain(&sur) {
                parts.push(seg.strings(c).map_err(&err)?);
            }
            for r in 0..n {
                let words: Vec<&str> = parts
                    .iter()
                    .filter_map(|p| p[r].as_deref())
                    .filter(|s| !s.is_empty())
                    .collect();
                if !words.is_empty() {
                    l.name[r] = l.strings.push(&words.join(" "));
                }
            }
        }
    }
    if let Some(c) = alt_col {
        read_strings(&seg, &c, &mut l.strings, &mut l.alt_name).map_err(&err)?;
    }

    // Birth date and gender: the record's own, else what a (possibly broken) id encodes.
    if let Some(c) = col_of(&config, &[Role::BirthDate]) {
        for (r, v) in seg.ints(&c).map_err(&err)?.into_iter().enumerate() {
            if let Some(v) = v {
                l.birth[r] = v as i32;
            }
        }
    }
    if let Some(c) = col_of(&config, &[Role::Gender]) {
        let g = &mut l.gender;
        seg.for_each_str(&c, |r, v| {
            g[r] = match v {
                Some("男") | Some("m") | Some("male") => 1,
                Some("女") | Some("f") | Some("female") => 2,
                _ => 0,
            }
        })
        .map_err(&err)?;
    }
    for r in 0..n {
        if matches!(l.id_state[r], IdState::Key | IdState::BrokenPid) && l.kinds[r] & 1 != 0 {
            let id = l.strings.text(l.id[r]).as_bytes();
            if id.len() == 18 && id[..17].iter().all(u8::is_ascii_digit) {
                if l.birth[r] == NO_DATE
                    && let Some(d) = crate::date::Date::from_yyyymmdd(&id[6..14])
                {
                    l.birth[r] = d.0;
                }
                if l.gender[r] == 0 && l.id_state[r] == IdState::Key {
                    l.gender[r] = if (id[16] - b'0') % 2 == 1 { 1 } else { 2 };
                }
            }
        }
    }

    // Phone.
    if let Some(c) = col_of(&config, &[Role::Phone]) {
        let p = &mut l.phone;
        seg.for_each_str(&c, |r, v| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                p[r] = xxh3_64(v.as_bytes()) | 1;
            }
        })
        .map_err(&err)?;
    }

    // Address: components when the column is a full address, else the joined lines.
    if let Some(c) = col_of(&config, &[Role::Address]) {
        let parts = [
            "district", "town", "village", "road", "number", "estate", "building", "unit", "room",
        ];
        let mut cols: Vec<Vec<Option<&str>>> = Vec::with_capacity(parts.len());
        for p in parts {
            let mut v = vec![None; n];
            seg.for_each_str(&format!("{c}.{p}"), |r, s| {
                v[r] = s.filter(|s| !s.is_empty())
            })
            .map_err(&err)?;
            cols.push(v);
        }
        #[allow(clippy::needless_range_loop)] // nine columns read at one row
        for r in 0..n {
            let [
                district,
                town,
                village,
                road,
                number,
                estate,
                building,
                unit,
                room,
            ] = std::array::from_fn(|i| cols[i][r]);
            l.addr[r] = address_prints(
                district, town, village, road, number, estate, building, unit, room,
            );
            if let Some(d) = district {
                l.district[r] = xxh3_64(d.as_bytes()) as u32 | 1;
            }
        }
    } else {
        let lines = cols_of(&config, Role::AddressLine);
        let locality = col_of(&config, &[Role::Locality]);
        let postcode = col_of(&config, &[Role::Postcode]);
        if !lines.is_empty() || locality.is_some() {
            let mut line_vals = Vec::new();
            for c in &lines {
                line_vals.push(seg.strings(c).map_err(&err)?);
            }
            let loc = match &locality {
                Some(c) => seg.strings(c).map_err(&err)?,
                None => vec![None; n],
            };
            let post = match &postcode {
                Some(c) => seg.strings(c).map_err(&err)?,
                None => vec![None; n],
            };
            for r in 0..n {
                let street: Vec<&str> = line_vals
                    .iter()
                    .filter_map(|v| v[r].as_deref())
                    .filter(|s| !s.is_empty())
                    .collect();
                let area = [loc[r].as_deref(), post[r].as_deref()];
                l.addr[r] = latin_address_prints(&street, area);
                if let Some(p) = post[r].as_deref().or(loc[r].as_deref()) {
                    l.district[r] = xxh3_64(p.as_bytes()) as u32 | 1;
                }
            }
        }
    }
    Ok(Some(l))
}

fn id_state_of(status: &str, subject: Subject) -> IdState {
    if status == UsccStatus::LegacyRegNo.as_str() {
        return IdState::RegNo;
    }
    let valid_key = [PidStatus::Valid, PidStatus::Upgraded15]
        .iter()
        .any(|s| s.as_str() == status)
        || status == UsccStatus::Valid.as_str();
    if valid_key {
        return IdState::Key;
    }
    let broken = status == PidStatus::BadCheck.as_str()
        || status == PidStatus::BadBirthDate.as_str()
        || status == PidStatus::BirthMismatch.as_str()
        || status == PidStatus::GenderMismatch.as_str();
    match (broken, subject) {
        (true, Subject::Enterprise) => IdState::BrokenUscc,
        (true, _) => IdState::BrokenPid,
        _ => IdState::None,
    }
}

/// Fingerprints of an address at three levels of detail; 0 where the level has no content.
#[allow(clippy::too_many_arguments)]
pub fn address_prints(
    district: Option<&str>,
    town: Option<&str>,
    village: Option<&str>,
    road: Option<&str>,
    number: Option<&str>,
    estate: Option<&str>,
    building: Option<&str>,
    unit: Option<&str>,
    room: Option<&str>,
) -> [u64; 3] {
    let h = |parts: &[Option<&str>], seed: u64| -> u64 {
        if parts.iter().all(Option::is_none) {
            return 0;
        }
        let mut buf = Vec::with_capacity(64);
        for p in parts {
            buf.extend_from_slice(p.unwrap_or("").as_bytes());
            buf.push(0x1f);
        }
        xxh3_64_with_seed(&buf, seed) | 1
    };
    // The district is left out of the finer prints: variants often drop it, and a road,
    // number, estate and room together name one home in the city.
    let place = road.or(village).or(estate);
    let full = if room.is_some() || number.is_some() || building.is_some() {
        h(
            &[town, village, road, number, estate, building, unit, room],
            1,
        )
    } else {
        0
    };
    let bldg = if place.is_some() && (building.is_some() || number.is_some()) {
        h(&[village, road, number, estate, building], 2)
    } else {
        0
    };
    let area = if place.is_some() {
        h(&[district, place], 3)
    } else {
        0
    };
    [full, bldg, area]
}

/// Fingerprints of a Western-style address: street lines, then locality and postcode.
fn latin_address_prints(street: &[&str], area: [Option<&str>; 2]) -> [u64; 3] {
    let norm = |s: &str| {
        s.to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let street = norm(&street.join(" "));
    let area_s: Vec<String> = area.iter().map(|a| norm(a.unwrap_or(""))).collect();
    let full = if street.is_empty() {
        0
    } else {
        xxh3_64_with_seed(format!("{street}\x1f{}", area_s[0]).as_bytes(), 1) | 1
    };
    let bldg = if street.is_empty() {
        0
    } else {
        xxh3_64_with_seed(street.as_bytes(), 2) | 1
    };
    let area = if area_s.iter().all(String::is_empty) {
        0
    } else {
        xxh3_64_with_seed(area_s.join("\x1f").as_bytes(), 3) | 1
    };
    [full, bldg, area]
}

/// Whether a segment column exists with the given type (used by event attribution).
pub fn has_column(seg: &Segment, name: &str, ty: ColumnType) -> bool {
    seg.schema().iter().any(|c| c.name == name && c.ty == ty)
}
