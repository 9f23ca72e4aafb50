//! Field comparisons made for Chinese government records. Each comparison returns an
//! agreement level (0 = disagree, higher = closer) or [`MISSING`] when either side has no
//! value; the Fellegi–Sunter model turns levels into weights.

use super::records::{IdState, NO_DATE, NONE, Records};

/// Either side lacks the value: no evidence either way.
pub const MISSING: u8 = u8::MAX;

/// The compared fields, in comparison-vector order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id = 0,
    Name = 1,
    Birth = 2,
    Gender = 3,
    Phone = 4,
    Address = 5,
}

pub const FIELDS: usize = 6;

impl Field {
    pub const ALL: [Field; FIELDS] = [
        Field::Id,
        Field::Name,
        Field::Birth,
        Field::Gender,
        Field::Phone,
        Field::Address,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Name => "name",
            Field::Birth => "birth",
            Field::Gender => "gender",
            Field::Phone => "phone",
            Field::Address => "address",
        }
    }

    /// Number of agreement levels (besides missing).
    pub fn levels(self) -> usize {
        match self {
            Field::Id => 3,
            Field::Name => 4,
            Field::Birth => 3,
            Field::Gender => 2,
            Field::Phone => 2,
            Field::Address => 5,
        }
    }

    /// Names of the levels, lowest first.
    pub fn level_name(self, level: u8) -> &'static str {
        if level == MISSING {
            return "missing";
        }
        match (self, level) {
            (Field::Id, 0) => "different",
            (Field::Id, 1) => "one digit away",
            (Field::Id, _) => "same",
            (Field::Name, 0) => "different",
            (Field::Name, 1) => "one character apart",
            (Field::Name, 2) => "same sound",
            (Field::Name, _) => "same",
            (Field::Birth, 0) => "different",
            (Field::Birth, 1) => "one digit or day/month swapped",
            (Field::Birth, _) => "same",
            (Field::Gender, 0) | (Field::Phone, 0) => "different",
            (Field::Gender, _) | (Field::Phone, _) => "same",
            (Field::Address, 0) => "different",
            (Field::Address, 1) => "same district (one side has no more)",
            (Field::Address, 2) => "same road or village",
            (Field::Address, 3) => "same building",
            (Field::Address, _) => "same home",
        }
    }
}

/// A comparison vector: one level per field.
pub type Gamma = [u8; FIELDS];

/// Identifiers: the same, one substitution or one adjacent transposition apart, or different.
pub fn id_level(a: &[u8], b: &[u8]) -> u8 {
    if a == b {
        return 2;
    }
    if a.len() != b.len() {
        return 0;
    }
    let mut diff = [0usize; 3];
    let mut n = 0;
    for i in 0..a.len() {
        if a[i] != b[i] {
            if n == 2 {
                return 0;
            }
            diff[n] = i;
            n += 1;
        }
    }
    let transposed =
        n == 2 && diff[1] == diff[0] + 1 && a[diff[0]] == b[diff[1]] && a[diff[1]] == b[diff[0]];
    u8::from(n == 1 || transposed)
}

/// Names: the same, the same sound (homophones: 张伟/章伟, 静/婧), one character apart (a
/// typo, a dropped character; for long names, a few characters in proportion), or different.
pub fn name_level(recs: &Records, a: u32, b: u32) -> u8 {
    if a == NONE || b == NONE {
        return MISSING;
    }
    if a == b {
        return 3;
    }
    if recs.names.sound[a as usize] == recs.names.sound[b as usize] {
        return 2;
    }
    let (na, nb) = (
        recs.names.short[a as usize].as_slice(),
        recs.names.short[b as usize].as_slice(),
    );
    if !na.is_empty() && !nb.is_empty() {
        // Short names (budget 1): one substitution, insertion or deletion.
        return u8::from(within_one(na, nb));
    }
    let (sa, sb) = (recs.names.text(a), recs.names.text(b));
    let len = sa.chars().count().max(sb.chars().count());
    let budget = if len <= 4 { 1 } else { 1 + len / 8 };
    u8::from(char_distance_within(sa, sb, budget))
}

/// Whether two character sequences are at most one edit apart.
fn within_one(a: &[char], b: &[char]) -> bool {
    let (s, l) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match l.len() - s.len() {
        0 => s.iter().zip(l).filter(|(x, y)| x != y).count() <= 1,
        1 => {
            let i = s.iter().zip(l).take_while(|(x, y)| x == y).count();
            s[i..] == l[i + 1..]
        }
        _ => false,
    }
}

/// Whether two strings are within `k` character edits (insert, delete, substitute).
pub fn char_distance_within(a: &str, b: &str, k: usize) -> bool {
    let mut ab = ['\0'; 48];
    let mut bb = ['\0'; 48];
    let (mut na, mut nb) = (0, 0);
    for c in a.chars() {
        if na == ab.len() {
            return false;
        }
        ab[na] = c;
        na += 1;
    }
    for c in b.chars() {
        if nb == bb.len() {
            return false;
        }
        bb[nb] = c;
        nb += 1;
    }
    if na.abs_diff(nb) > k {
        return false;
    }
    let (a, b) = (&ab[..na], &bb[..nb]);
    // Two rows of the edit-distance table.
    let mut prev = [0usize; 49];
    let mut cur = [0usize; 49];
    for (j, p) in prev.iter_mut().enumerate().take(nb + 1) {
        *p = j;
    }
    for i in 1..=na {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=nb {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
            row_min = row_min.min(cur[j]);
        }
        if row_min > k {
            return false;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[nb] <= k
}

/// Birth dates: the same, one digit apart in `YYYYMMDD` or day and month swapped, or
/// different.
pub fn birth_level(a: u32, b: u32) -> u8 {
    if a == NO_DATE || b == NO_DATE {
        return MISSING;
    }
    if a == b {
        return 2;
    }
    let swapped = a / 10000 == b / 10000 && a / 100 % 100 == b % 100 && a % 100 == b / 100 % 100;
    let mut digits = 0;
    let (mut x, mut y) = (a, b);
    for _ in 0..8 {
        digits += u32::from(x % 10 != y % 10);
        x /= 10;
        y /= 10;
    }
    u8::from(swapped || digits == 1)
}

pub fn gender_level(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        MISSING
    } else {
        u8::from(a == b)
    }
}

pub fn phone_level(a: u64, b: u64) -> u8 {
    if a == 0 || b == 0 {
        MISSING
    } else {
        u8::from(a == b)
    }
}

/// Addresses by component: the same home, the same building, the same road or village, or
/// different. A record with no more than a division code (a tax registration's region)
/// meets an address on the district alone: the same district, or different.
pub fn address_level(recs: &Records, a: usize, b: usize) -> u8 {
    let (x, y) = (&recs.f[a], &recs.f[b]);
    let has_x = (x.addr_full | x.addr_building | x.addr_area) != 0;
    let has_y = (y.addr_full | y.addr_building | y.addr_area) != 0;
    let districts = x.district != 0 && y.district != 0;
    if districts && x.district != y.district {
        return 0;
    }
    if !(has_x && has_y) {
        return if districts { 1 } else { MISSING };
    }
    if x.addr_full != 0 && x.addr_full == y.addr_full {
        4
    } else if x.addr_building != 0 && x.addr_building == y.addr_building {
        3
    } else if x.addr_area != 0 && x.addr_area == y.addr_area {
        2
    } else {
        // Two addresses on different roads: different, even within one district (a
        // district-only level here would be shared by far too many unrelated pairs).
        0
    }
}

/// Compares two records field by field.
pub fn compare(recs: &Records, a: usize, b: usize) -> Gamma {
    // A source-local key only means something within its own source, and a registration
    // number only against another registration number.
    let (sa, sb) = (recs.f[a].id_state, recs.f[b].id_state);
    let comparable = match (sa, sb) {
        (IdState::Local, IdState::Local) => recs.f[a].source == recs.f[b].source,
        (IdState::Local, _) | (_, IdState::Local) => false,
        (IdState::RegNo, IdState::RegNo) => true,
        (IdState::RegNo, _) | (_, IdState::RegNo) => false,
        _ => true,
    };
    let id = match (recs.f[a].id, recs.f[b].id) {
        _ if !comparable => MISSING,
        (NONE, _) | (_, NONE) => MISSING,
        (x, y) if x == y => 2,
        (x, y) => {
            let (fx, fy) = (&recs.id18[x as usize], &recs.id18[y as usize]);
            if fx[0] != 0 && fy[0] != 0 {
                id_level(fx, fy)
            } else {
                id_level(recs.ids.text(x).as_bytes(), recs.ids.text(y).as_bytes())
            }
        }
    };
    // A representative's name (an account in the operator's name) counts, but never as
    // strongly as the subject's own name.
    let alt = name_level(recs, recs.f[a].name, recs.f[b].alt_name).max_present(name_level(
        recs,
        recs.f[a].alt_name,
        recs.f[b].name,
    ));
    let name = name_level(recs, recs.f[a].name, recs.f[b].name).max_present(if alt == MISSING {
        alt
    } else {
        alt.min(1)
    });
    [
        id,
        name,
        birth_level(recs.f[a].birth, recs.f[b].birth),
        gender_level(recs.f[a].gender, recs.f[b].gender),
        phone_level(recs.f[a].phone, recs.f[b].phone),
        address_level(recs, a, b),
    ]
}

/// Folds levels where [`MISSING`] counts as lower than any present level.
pub trait MaxPresent {
    fn max_present(self, other: Self) -> Self;
}

impl MaxPresent for u8 {
    fn max_present(self, other: u8) -> u8 {
        match (self, other) {
            (MISSING, o) => o,
            (s, MISSING) => s,
            (s, o) => s.max(o),
        }
    }
}

/// The best agreement of a record with any of a group of records, field by field.
pub fn compare_best(recs: &Records, a: usize, group: impl Iterator<Item = usize>) -> Gamma {
    let mut best = [MISSING; FIELDS];
    for b in group {
        let g = compare(recs, a, b);
        for f in 0..FIELDS {
            best[f] = best[f].max_present(g[f]);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::date::Date;

    #[test]
    fn ids_one_digit_or_transposition_apart() {
        assert_eq!(id_level(b"411403197312145170", b"411403197312145170"), 2);
        assert_eq!(id_level(b"411403197312145170", b"411403197312145179"), 1);
        assert_eq!(id_level(b"411403197312145170", b"411403197321145170"), 1);
        assert_eq!(id_level(b"411403197312145170", b"411403197321145179"), 0);
        assert_eq!(id_level(b"411403197312145170", b"41140319731214517"), 0);
    }

    #[test]
    fn birth_dates_with_one_digit_typos_and_swaps() {
        let d = |y, m, dd| Date::from_ymd(y, m, dd).unwrap().yyyymmdd();
        assert_eq!(birth_level(d(1985, 3, 7), d(1985, 3, 7)), 2);
        assert_eq!(birth_level(d(1985, 3, 7), d(1985, 7, 3)), 1);
        assert_eq!(birth_level(d(1985, 3, 7), d(1986, 3, 7)), 1);
        assert_eq!(birth_level(d(1985, 3, 7), d(1985, 3, 8)), 1);
        assert_eq!(birth_level(d(1985, 3, 7), d(1986, 4, 7)), 0);
        assert_eq!(birth_level(NO_DATE, d(1986, 4, 7)), MISSING);
    }

    #[test]
    fn one_edit_on_short_names() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(within_one(&c("王小明"), &c("王晓明")));
        assert!(within_one(&c("王明"), &c("王小明")));
        assert!(within_one(&c("王小明"), &c("王明")));
        assert!(!within_one(&c("王小明"), &c("李晓明")));
        assert!(!within_one(&c("王"), &c("王小明")));
    }

    #[test]
    fn character_distance() {
        assert!(char_distance_within("王小明", "王晓明", 1));
        assert!(char_distance_within("王明", "王小明", 1));
        assert!(!char_distance_within("王小明", "李晓明", 1));
        assert!(char_distance_within(
            "商丘市中原商务咨询有限公司",
            "商丘市中原商务咨询公司",
            2
        ));
    }
}
