//! The per-source plan: which CSV field feeds which normalized output columns, and the
//! row-at-a-time normalization that fills them or rejects the row with a reason.

use std::borrow::Cow;
use std::collections::HashSet;

use csv::ByteRecord;

use super::normalize::{
    self, Address, ValueError, fold_width, normalize_name, normalize_phone, parse_address,
    to_simplified,
};
use super::segment::{ColumnData, ColumnSchema, ColumnType};
use crate::date::Date;
use crate::ids::{Gender, PidStatus, UsccStatus, validate_pid, validate_uscc};
use crate::source::config::{Role, SourceConfig};

/// Output columns of an address, after the canonical text.
pub const ADDRESS_PARTS: [&str; 11] = [
    "province", "city", "district", "town", "village", "road", "number", "estate", "building",
    "unit", "room",
];

/// Counters for one identifier column: statuses of id numbers then of USCCs.
pub const ID_STATUS_SLOTS: usize = PidStatus::ALL.len() + UsccStatus::ALL.len();

/// The row's own birth date and gender, cross-checked against its subject's id number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Own {
    birth: Option<Date>,
    gender: Option<Gender>,
}

/// The segment columns a column of `role` becomes, as `(suffix, type)` (suffix "" for the
/// normalized value itself, then raw text, validation status, address components …).
pub fn stored_columns(role: Role) -> Vec<(&'static str, ColumnType)> {
    use ColumnType::{Bytes, Dict, Int};
    match role {
        Role::PersonId | Role::PersonRef | Role::EnterpriseId | Role::EnterpriseRef => {
            vec![("", Bytes), ("raw", Bytes), ("status", Dict)]
        }
        Role::PartyId | Role::PartyRef => {
            vec![
                ("", Bytes),
                ("raw", Bytes),
                ("status", Dict),
                ("kind", Dict),
            ]
        }
        Role::Phone => vec![("", Bytes), ("raw", Bytes)],
        Role::Address => std::iter::once(("", Bytes))
            .chain(ADDRESS_PARTS.iter().map(|p| (*p, Bytes)))
            .chain([("region", Int)])
            .collect(),
        Role::Region => vec![("", Int), ("raw", Bytes)],
        Role::Gender | Role::Category => vec![("", Dict)],
        Role::BirthDate
        | Role::Date
        | Role::Month
        | Role::Amount
        | Role::Quantity
        | Role::Integer
        | Role::Flag => vec![("", Int)],
        Role::RecordId
        | Role::Name
        | Role::Surname
        | Role::GivenName
        | Role::OrgName
        | Role::AddressLine
        | Role::Locality
        | Role::Postcode
        | Role::Key
        | Role::Text => vec![("", Bytes)],
        Role::Ignore => Vec::new(),
    }
}

/// Why a row was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub column: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Field {
    header_idx: usize,
    name: String,
    role: Role,
    required: bool,
    allow_negative: bool,
    values: HashSet<String>,
    /// First output column.
    out: usize,
    /// Index into the identifier counters, for identifier roles.
    id_slot: Option<usize>,
    /// Index into the category caches, for category roles.
    cat_slot: Option<usize>,
    /// Index into the address memos, for address roles.
    addr_slot: Option<usize>,
}

/// How one source's rows become normalized columns.
#[derive(Debug, Clone)]
pub struct Plan {
    pub schema: Vec<ColumnSchema>,
    fields: Vec<Field>,
    pub header_len: usize,
    birth: Option<usize>,
    gender: Option<usize>,
    /// Names of the identifier columns, in counter order.
    pub id_columns: Vec<String>,
}

/// Counters a batch accumulates.
#[derive(Debug, Clone, Default)]
pub struct RowStats {
    pub id_status: Vec<[u64; ID_STATUS_SLOTS]>,
    /// Identifier statuses of the row being pushed (reused buffer).
    pending: Vec<(usize, usize)>,
    /// The last identifier per identifier column.
    memos: Vec<Option<IdMemo>>,
    /// Normalized categories by raw value, per category column (bounded).
    categories: Vec<Vec<(Box<str>, Box<str>)>>,
    /// The last address per address column: raw text, components, canonical text.
    addresses: Vec<Option<(Box<str>, Address, String)>>,
}

impl Plan {
    /// Builds the plan from a config and the file's header. Every declared column must be in
    /// the header; extra header columns are ignored (and counted as such by the caller).
    pub fn new(config: &SourceConfig, header: &[String]) -> Result<Plan, String> {
        let mut schema = vec![ColumnSchema {
            name: "_line".into(),
            ty: ColumnType::Int,
        }];
        let mut fields = Vec::new();
        let mut id_columns = Vec::new();
        let (mut birth, mut gender) = (None, None);
        let mut categories = 0;
        let mut addresses = 0;
        for c in &config.columns {
            let Some(header_idx) = header.iter().position(|h| h.trim() == c.name) else {
                return Err(c.name.clone());
            };
            if c.role == Role::Ignore {
                continue;
            }
            let out = schema.len();
            for (suffix, ty) in stored_columns(c.role) {
                let name = if suffix.is_empty() {
                    c.name.clone()
                } else {
                    format!("{}.{suffix}", c.name)
                };
                schema.push(ColumnSchema { name, ty });
            }
            let id_slot = c.role.is_identifier().then(|| {
                id_columns.push(c.name.clone());
                id_columns.len() - 1
            });
            if c.role == Role::BirthDate {
                birth = Some(header_idx);
            }
            if c.role == Role::Gender {
                gender = Some(header_idx);
            }
            fields.push(Field {
                header_idx,
                name: c.name.clone(),
                role: c.role,
                required: c.required,
                allow_negative: c.allow_negative,
                values: c
                    .values
                    .iter()
                    .map(|v| normalize_category(v).into_owned())
                    .collect(),
                out,
                id_slot,
                cat_slot: (c.role == Role::Category).then(|| {
                    categories += 1;
                    categories - 1
                }),
                addr_slot: (c.role == Role::Address).then(|| {
                    addresses += 1;
                    addresses - 1
                }),
            });
        }
        Ok(Plan {
            schema,
            fields,
            header_len: header.len(),
            birth,
            gender,
            id_columns,
        })
    }

    pub fn new_stats(&self) -> RowStats {
        RowStats {
            id_status: vec![[0; ID_STATUS_SLOTS]; self.id_columns.len()],
            pending: Vec::new(),
            memos: vec![None; self.id_columns.len()],
            categories: vec![
                Vec::new();
                self.fields.iter().filter(|f| f.cat_slot.is_some()).count()
            ],
            addresses: vec![None; self.fields.iter().filter(|f| f.addr_slot.is_some()).count()],
        }
    }

    /// Normalizes one row into `cols`, or leaves `cols` as they were and says why not.
    /// The rejection of a row that is not valid UTF-8, naming the first bad column.
    pub fn utf8_reject(&self, rec: &ByteRecord) -> Reject {
        let column = (0..rec.len())
            .find(|&i| simdutf8::basic::from_utf8(&rec[i]).is_err())
            .map_or_else(
                || "*".to_string(),
                |i| {
                    self.fields
                        .iter()
                        .find(|f| f.header_idx == i)
                        .map_or_else(|| format!("#{}", i + 1), |f| f.name.clone())
                },
            );
        Reject {
            column,
            reason: "the value is not valid UTF-8".into(),
        }
    }

    /// Normalizes one row into `cols`, or leaves `cols` as they were and says why not.
    pub fn push_row(
        &self,
        line: u64,
        rec: &ByteRecord,
        cols: &mut [ColumnData],
        stats: &mut RowStats,
    ) -> Result<(), Reject> {
        if rec.len() != self.header_len {
            return Err(Reject {
                column: "*".into(),
                reason: format!(
                    "the row has {} fields, the header has {}",
                    rec.len(),
                    self.header_len
                ),
            });
        }
        // The row is validated as UTF-8 once (vectorized); a field is then a sub-slice that
        // must start and end on character boundaries (a delimiter is ASCII, so it always does
        // unless the raw bytes split a character, which is itself invalid input).
        let Ok(whole) = simdutf8::basic::from_utf8(rec.as_slice()) else {
            return Err(self.utf8_reject(rec));
        };
        for f in &self.fields {
            if rec.range(f.header_idx).and_then(|r| whole.get(r)).is_none() {
                return Err(self.utf8_reject(rec));
            }
        }
        let text = |i: usize| rec.range(i).and_then(|r| whole.get(r)).unwrap_or("");
        let birth = self
            .birth
            .and_then(|i| normalize::parse_date(text(i)).ok().flatten());
        let gender = self
            .gender
            .and_then(|i| parse_gender(text(i)).ok().flatten());
        let before = cols[0].rows();
        cols[0].push_int(Some(line as i64));
        let mut pending = std::mem::take(&mut stats.pending);
        pending.clear();
        for f in &self.fields {
            let raw = text(f.header_idx);
            let own = Own { birth, gender };
            match self.push_field(f, raw, own, cols, &mut pending, stats) {
                Ok(()) => {}
                Err(reason) => {
                    stats.pending = pending;
                    for c in cols.iter_mut() {
                        c.truncate(before);
                    }
                    return Err(Reject {
                        column: f.name.clone(),
                        reason,
                    });
                }
            }
        }
        for &(slot, status) in &pending {
            stats.id_status[slot][status] += 1;
        }
        stats.pending = pending;
        Ok(())
    }

    fn push_field(
        &self,
        f: &Field,
        raw: &str,
        own: Own,
        cols: &mut [ColumnData],
        pending: &mut Vec<(usize, usize)>,
        stats: &mut RowStats,
    ) -> Result<(), String> {
        let RowStats {
            memos,
            categories,
            addresses,
            ..
        } = stats;
        let numeric = matches!(
            f.role,
            Role::Amount
                | Role::Quantity
                | Role::Integer
                | Role::Flag
                | Role::Month
                | Role::Date
                | Role::BirthDate
        );
        // Numbers, dates, ids and keys parse their raw text (their parsers fold what needs
        // folding); text is cleaned first.
        let trimmed =
            if numeric || f.role.is_identifier() || matches!(f.role, Role::Key | Role::Category) {
                Cow::Borrowed(raw.trim_ascii())
            } else {
                clean(raw)
            };
        if f.required && trimmed.is_empty() {
            return Err("a required value is empty".into());
        }
        let o = f.out;
        let text_or_none = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let err = |e: ValueError| e.to_string();
        match f.role {
            Role::PersonId
            | Role::PersonRef
            | Role::EnterpriseId
            | Role::EnterpriseRef
            | Role::PartyId
            | Role::PartyRef => {
                let id = fold_id(&trimmed);
                let slot = f.id_slot.unwrap_or(0);
                let subject = matches!(f.role, Role::PersonId | Role::PartyId);
                let own = if subject {
                    own
                } else {
                    Own {
                        birth: None,
                        gender: None,
                    }
                };
                // Exports are sorted by entity: the same id repeats on consecutive rows, so the
                // last result per column is remembered.
                let memo = &mut memos[slot];
                let hit = memo
                    .as_ref()
                    .is_some_and(|m| m.raw == id.as_bytes() && m.own == own);
                if !hit {
                    *memo = Some(IdMemo {
                        raw: id.as_bytes().to_vec(),
                        own,
                        result: check_id(f.role, id.as_bytes(), own),
                    });
                }
                let Some(m) = memo.as_ref() else {
                    return Err("internal: identifier memo missing".into());
                };
                let r = &m.result;
                push_id(
                    cols,
                    o,
                    &id,
                    (r.len > 0).then(|| &r.normalized[..r.len as usize]),
                    r.status,
                );
                if matches!(f.role, Role::PartyId | Role::PartyRef) {
                    cols[o + 3].push_str(r.kind);
                }
                pending.push((slot, r.slot));
            }
            Role::Phone => {
                cols[o].push_str(normalize_phone(&trimmed).as_deref());
                cols[o + 1].push_str((!trimmed.is_empty()).then_some(&*trimmed));
            }
            Role::Address => {
                if trimmed.is_empty() {
                    for c in &mut cols[o..o + 1 + ADDRESS_PARTS.len()] {
                        c.push_str(None);
                    }
                    cols[o + 1 + ADDRESS_PARTS.len()].push_int(None);
                } else {
                    // Household members and repeated rows share addresses: remember the last.
                    let memo = &mut addresses[f.addr_slot.unwrap_or(0)];
                    if memo.as_ref().is_none_or(|m| *m.0 != *trimmed) {
                        let a = parse_address(&trimmed);
                        let canonical = a.canonical();
                        *memo = Some((Box::from(&*trimmed), a, canonical));
                    }
                    let Some((_, a, canonical)) = memo.as_ref() else {
                        return Err("internal: address memo missing".into());
                    };
                    cols[o].push_str(Some(canonical));
                    let parts = [
                        &a.province,
                        &a.city,
                        &a.district,
                        &a.town,
                        &a.village,
                        &a.road,
                        &a.number,
                        &a.estate,
                        &a.building,
                        &a.unit,
                        &a.room,
                    ];
                    for (i, p) in parts.into_iter().enumerate() {
                        cols[o + 1 + i].push_str((!p.is_empty()).then_some(p.as_str()));
                    }
                    cols[o + 1 + ADDRESS_PARTS.len()].push_int(a.region.map(i64::from));
                }
            }
            Role::Region => {
                if trimmed.is_empty() {
                    cols[o].push_int(None);
                    cols[o + 1].push_str(None);
                } else {
                    let b = trimmed.as_bytes();
                    if !(b.len() == 6 || b.len() == 9 || b.len() == 12)
                        || !b.iter().all(u8::is_ascii_digit)
                    {
                        return Err(format!(
                            "region {trimmed:?} is not a 6-, 9- or 12-digit division code"
                        ));
                    }
                    let code: i64 = trimmed[..6].parse().unwrap_or(0);
                    cols[o].push_int(Some(code));
                    cols[o + 1].push_str(Some(&trimmed));
                }
            }
            Role::Gender => {
                let g = parse_gender(&trimmed)?;
                cols[o].push_str(g.map(Gender::as_str));
            }
            Role::Category => {
                // Categories repeat: each distinct raw value is normalized (and checked against
                // the declared values) once per batch; a short scan finds it again.
                let cache = &mut categories[f.cat_slot.unwrap_or(0)];
                let owned;
                let v: &str = match cache.iter().position(|(r, _)| **r == *trimmed) {
                    Some(i) => &cache[i].1,
                    None => {
                        let n = normalize_category(&clean(&trimmed)).into_owned();
                        if !n.is_empty() && !f.values.is_empty() && !f.values.contains(&n) {
                            return Err(err(ValueError::Category { value: n }));
                        }
                        if cache.len() < 64 {
                            cache.push((Box::from(&*trimmed), n.into_boxed_str()));
                            &cache[cache.len() - 1].1
                        } else {
                            owned = n;
                            &owned
                        }
                    }
                };
                cols[o].push_str((!v.is_empty()).then_some(v));
            }
            Role::BirthDate | Role::Date => {
                let d = normalize::parse_date(&trimmed).map_err(err)?;
                cols[o].push_int(d.map(|d| i64::from(d.0)));
            }
            Role::Month => {
                let m = normalize::parse_month(&trimmed).map_err(err)?;
                cols[o].push_int(m.map(|m| i64::from(m.0)));
            }
            Role::Amount => {
                cols[o].push_int(normalize::parse_amount(&trimmed, f.allow_negative).map_err(err)?);
            }
            Role::Quantity => {
                let v = normalize::parse_milli(&trimmed).map_err(err)?;
                if v.is_some_and(|v| v < 0) && !f.allow_negative {
                    return Err(format!("quantity {trimmed:?} is negative"));
                }
                cols[o].push_int(v);
            }
            Role::Integer => cols[o].push_int(normalize::parse_int(&trimmed).map_err(err)?),
            Role::Flag => {
                cols[o].push_int(normalize::parse_flag(&trimmed).map_err(err)?.map(i64::from));
            }
            Role::Name | Role::Surname | Role::GivenName | Role::OrgName => {
                let n = normalize_name(&trimmed);
                cols[o].push_str(text_or_none(&n).as_deref());
            }
            Role::Key => {
                let k = fold_id(&trimmed);
                cols[o].push_str((!k.is_empty()).then_some(&*k));
            }
            Role::Postcode => {
                let p: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
                cols[o].push_str(text_or_none(&p).as_deref());
            }
            Role::RecordId | Role::AddressLine | Role::Locality | Role::Text => {
                cols[o].push_str((!trimmed.is_empty()).then_some(&*trimmed));
            }
            Role::Ignore => {}
        }
        Ok(())
    }
}

/// The validated form of one identifier.
#[derive(Debug, Clone)]
struct IdResult {
    normalized: [u8; 18],
    /// Meaningful bytes of `normalized`; 0 when there is none.
    len: u8,
    status: &'static str,
    /// Counter slot of the status.
    slot: usize,
    /// For party identifiers: person or enterprise.
    kind: Option<&'static str>,
}

/// The last identifier validated in one column.
#[derive(Debug, Clone)]
pub struct IdMemo {
    raw: Vec<u8>,
    own: Own,
    result: IdResult,
}

fn check_id(role: Role, id: &[u8], own: Own) -> IdResult {
    let person = |id: &[u8], kind| {
        let c = validate_pid(id, own.birth, own.gender);
        IdResult {
            normalized: c.normalized.unwrap_or([0; 18]),
            len: if c.normalized.is_some() { 18 } else { 0 },
            status: c.status.as_str(),
            slot: pid_slot(c.status),
            kind,
        }
    };
    let enterprise = |id: &[u8], kind| {
        let c = validate_uscc(id);
        IdResult {
            normalized: c.normalized.unwrap_or([0; 18]),
            len: if c.normalized.is_some() {
                c.normalized_len
            } else {
                0
            },
            status: c.status.as_str(),
            slot: uscc_slot(c.status),
            kind,
        }
    };
    match role {
        Role::PersonId | Role::PersonRef => person(id, None),
        Role::EnterpriseId | Role::EnterpriseRef => enterprise(id, None),
        _ if looks_like_person(id) => person(id, Some("person")),
        _ => {
            let kind = (!id.is_empty()).then_some("enterprise");
            enterprise(id, kind)
        }
    }
}

/// Whether a party identifier is more likely an id number than a USCC or registration number.
fn looks_like_person(id: &[u8]) -> bool {
    match id.len() {
        15 => crate::ids::upgrade_pid_15(id)
            .and_then(|p| crate::ids::pid_birth_date(&p))
            .is_some(),
        18 => {
            // No province's division code begins with 9, and every USCC issued by market
            // regulation (91, 92, 93: companies, individual businesses, cooperatives) does:
            // such an id is a USCC, broken or not, even when all its characters are digits.
            if id[0] == b'9' {
                return false;
            }
            let pid = validate_pid(id, None, None).status;
            if matches!(pid, PidStatus::Valid | PidStatus::BadBirthDate) {
                return true;
            }
            validate_uscc(id).status != UsccStatus::Valid && id[..17].iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

/// Writes an identifier: the normalized form, the raw form only where it differs from the
/// normalized one (so that `raw = .raw ?? normalized`), and the status.
fn push_id(cols: &mut [ColumnData], o: usize, raw: &str, normalized: Option<&[u8]>, status: &str) {
    // Normalized ids are built from validated ASCII characters only.
    let norm = normalized.filter(|n| n.is_ascii());
    cols[o].push_utf8(norm);
    let differs = !raw.is_empty() && norm != Some(raw.as_bytes());
    cols[o + 1].push_str(differs.then_some(raw));
    cols[o + 2].push_str(Some(status));
}

fn pid_slot(s: PidStatus) -> usize {
    PidStatus::ALL.iter().position(|&x| x == s).unwrap_or(0)
}

fn uscc_slot(s: UsccStatus) -> usize {
    PidStatus::ALL.len() + UsccStatus::ALL.iter().position(|&x| x == s).unwrap_or(0)
}

/// Whether an identifier counter slot counts trusted keys, and whether it counts missing
/// identifiers.
pub fn slot_kind(slot: usize) -> (bool, bool) {
    match PidStatus::ALL.get(slot) {
        Some(&s) => (s.is_key(), s == PidStatus::Missing),
        None => match UsccStatus::ALL.get(slot - PidStatus::ALL.len()) {
            Some(&s) => (s == UsccStatus::Valid, s == UsccStatus::Missing),
            None => (false, false),
        },
    }
}

/// Label of an identifier counter slot (`pid:valid`, `uscc:bad_check`, …).
pub fn id_slot_label(slot: usize) -> String {
    if slot < PidStatus::ALL.len() {
        format!("pid:{}", PidStatus::ALL[slot].as_str())
    } else {
        format!(
            "uscc:{}",
            UsccStatus::ALL[slot - PidStatus::ALL.len()].as_str()
        )
    }
}

/// Width-folded, whitespace-collapsed text, borrowing when nothing needs changing (the common
/// case for ASCII values).
pub fn clean(raw: &str) -> Cow<'_, str> {
    // Printable ASCII without spaces needs nothing; anything else takes the full fold.
    if raw.bytes().all(|c| c.wrapping_sub(0x21) < 0x5E) {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(fold_width(raw))
    }
}

/// Identifiers and keys: spaces and dashes inside removed, uppercased.
fn fold_id(s: &str) -> Cow<'_, str> {
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        fold_width(s)
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    )
}

/// A category value as ingest stores it (cleaned; see [`clean`]).
pub fn normalize_category(s: &str) -> Cow<'_, str> {
    let c = clean(s);
    if c.is_ascii() {
        c
    } else {
        Cow::Owned(to_simplified(&c))
    }
}

/// Gender from the forms departments use: 男/女, M/F, male/female, GB/T 2261.1 codes 1/2
/// (0 and 9 are unknown).
pub fn parse_gender(s: &str) -> Result<Option<Gender>, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "男" | "m" | "male" | "1" => Ok(Some(Gender::Male)),
        "女" | "f" | "female" | "2" => Ok(Some(Gender::Female)),
        "" | "0" | "9" | "未知" | "未说明" | "unknown" | "u" => Ok(None),
        other => Err(format!("gender {other:?} is none of 男/女, M/F, 1/2")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_borrows_when_it_can() {
        assert!(matches!(clean("abc123"), Cow::Borrowed(_)));
        assert_eq!(clean("abc  123"), "abc 123");
        assert_eq!(clean("  abc  "), "abc");
        assert_eq!(clean("ＡＢ"), "AB");
        assert_eq!(
            fold_id("4114 0219-8503070035x"),
            "41140219850307 0035X".replace(' ', "")
        );
    }

    #[test]
    fn a_party_id_is_read_as_a_person_or_an_enterprise_by_its_form() {
        let none = Own {
            birth: None,
            gender: None,
        };
        let kind = |id: &str| check_id(Role::PartyId, id.as_bytes(), none).kind;
        // Valid: an id number, a USCC of digits only, a USCC with letters.
        assert_eq!(kind("411403198503071236"), Some("person"));
        assert_eq!(kind("914114231234567872"), Some("enterprise"));
        assert_eq!(kind("92411423MA45N7P3K1"), Some("enterprise"));
        // Broken: 18 digits are an id number's form unless they begin as a USCC of market
        // regulation does (no division code begins with 9).
        assert_eq!(kind("411403198503071237"), Some("person"));
        assert_eq!(kind("914114231234667872"), Some("enterprise"));
        assert_eq!(kind("924114027833998703"), Some("enterprise"));
        assert_eq!(kind(""), None);
    }

    #[test]
    fn genders() {
        assert_eq!(parse_gender("男"), Ok(Some(Gender::Male)));
        assert_eq!(parse_gender("F"), Ok(Some(Gender::Female)));
        assert_eq!(parse_gender("9"), Ok(None));
        assert!(parse_gender("x").is_err());
    }
}
