//! National identifiers: resident id numbers (GB 11643-1999), unified social credit codes
//! (GB 32100-2015) with their embedded organisation codes (GB 11714), legacy 15-digit
//! enterprise registration numbers (注册号, ISO 7064 MOD 11,10) and the administrative
//! divisions of the reference city.
//!
//! Validation never panics and never throws a value away: it says what the value is (valid,
//! upgraded from 15 digits, wrong check character, …) and, where it can be trusted, returns the
//! normalized 18-character form.

use crate::date::Date;

/// A person's gender as encoded in the id number's sequence parity (odd = male).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    pub fn as_str(self) -> &'static str {
        match self {
            Gender::Male => "男",
            Gender::Female => "女",
        }
    }
}

/// Shangqiu (411400) and its districts and counties.
pub const CITY_CODE: u32 = 411400;
pub const DIVISIONS: [(u32, &str); 9] = [
    (411402, "梁园区"),
    (411403, "睢阳区"),
    (411421, "民权县"),
    (411422, "睢县"),
    (411423, "宁陵县"),
    (411424, "柘城县"),
    (411425, "虞城县"),
    (411426, "夏邑县"),
    (411481, "永城市"),
];

/// The division code of a district or county named in an address (`"梁园区"`, `"永城"`, …).
pub fn division_by_name(name: &str) -> Option<u32> {
    DIVISIONS.iter().find_map(|&(code, full)| {
        let short = full.trim_end_matches(['区', '县', '市']);
        (name == full || (!short.is_empty() && name == short)).then_some(code)
    })
}

/// The name of a division code of the reference city.
pub fn division_name(code: u32) -> Option<&'static str> {
    DIVISIONS.iter().find(|d| d.0 == code).map(|d| d.1)
}

// ---------------------------------------------------------------------------------------------
// Resident id numbers (GB 11643-1999)

const PID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const PID_CHECK: [u8; 11] = *b"10X98765432";

/// The check character for the first 17 digits of an id number, or `None` if any is not a
/// digit.
pub fn pid_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (b, w) in first17.iter().zip(PID_WEIGHTS) {
        if !b.is_ascii_digit() {
            return None;
        }
        sum += u32::from(b - b'0') * w;
    }
    Some(PID_CHECK[(sum % 11) as usize])
}

/// Builds a valid 18-character id number. `seq` is the 3-digit sequence (0..=999); its parity
/// must match the gender the caller intends (odd = male).
pub fn make_pid(division: u32, birth: Date, seq: u16) -> [u8; 18] {
    let mut out = [b'0'; 18];
    write_digits(&mut out[0..6], division % 1_000_000);
    write_digits(&mut out[6..14], birth.yyyymmdd());
    write_digits(&mut out[14..17], u32::from(seq % 1000));
    out[17] = pid_check_char(&out[..17]).unwrap_or(b'0');
    out
}

/// The legacy 15-digit form of an 18-digit id (drops the century and the check character).
/// Only people born in the 1900s had 15-digit ids.
pub fn pid_to_15(pid18: &[u8; 18]) -> [u8; 15] {
    let mut out = [0u8; 15];
    out[..6].copy_from_slice(&pid18[..6]);
    out[6..15].copy_from_slice(&pid18[8..17]);
    out
}

/// Upgrades a 15-digit id (6 division + 6 birth `YYMMDD` + 3 sequence) to 18 digits by
/// inserting the century `19` and computing the check character.
pub fn upgrade_pid_15(raw: &[u8]) -> Option<[u8; 18]> {
    if raw.len() != 15 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut out = [0u8; 18];
    out[..6].copy_from_slice(&raw[..6]);
    out[6] = b'1';
    out[7] = b'9';
    out[8..17].copy_from_slice(&raw[6..15]);
    out[17] = pid_check_char(&out[..17])?;
    Some(out)
}

/// What an id number turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PidStatus {
    /// 18 characters, check character correct, birth date possible, agrees with the record.
    Valid,
    /// A legacy 15-digit id, upgraded to 18 digits.
    Upgraded15,
    /// Empty.
    Missing,
    /// Not 15 or 18 characters of the right alphabet.
    BadFormat,
    /// Right shape, wrong check character (a typo or a transposition): not a key, still
    /// evidence.
    BadCheck,
    /// Right shape and check, but the embedded birth date does not exist.
    BadBirthDate,
    /// Valid, but the record's own birth date differs from the one encoded in the id.
    BirthMismatch,
    /// Valid, but the record's own gender differs from the one encoded in the id.
    GenderMismatch,
}

impl PidStatus {
    pub const ALL: [PidStatus; 8] = [
        PidStatus::Valid,
        PidStatus::Upgraded15,
        PidStatus::Missing,
        PidStatus::BadFormat,
        PidStatus::BadCheck,
        PidStatus::BadBirthDate,
        PidStatus::BirthMismatch,
        PidStatus::GenderMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PidStatus::Valid => "valid",
            PidStatus::Upgraded15 => "upgraded15",
            PidStatus::Missing => "missing",
            PidStatus::BadFormat => "bad_format",
            PidStatus::BadCheck => "bad_check",
            PidStatus::BadBirthDate => "bad_birth_date",
            PidStatus::BirthMismatch => "birth_mismatch",
            PidStatus::GenderMismatch => "gender_mismatch",
        }
    }

    /// Whether the normalized id can serve as a deterministic key. A cross-check mismatch
    /// means the id is well-formed but belongs to someone else's fields: keep it as evidence,
    /// do not trust it as a key.
    pub fn is_key(self) -> bool {
        matches!(self, PidStatus::Valid | PidStatus::Upgraded15)
    }
}

/// The outcome of validating one id number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidCheck {
    pub status: PidStatus,
    /// The 18-character form, present whenever the shape allowed one (also for a bad check
    /// character, uppercased, so that resolution can use it as near-key evidence).
    pub normalized: Option<[u8; 18]>,
}

/// Birth date encoded in an 18-digit id.
pub fn pid_birth_date(pid18: &[u8; 18]) -> Option<Date> {
    Date::from_yyyymmdd(&pid18[6..14])
}

/// Gender encoded in an 18-digit id.
pub fn pid_gender(pid18: &[u8; 18]) -> Option<Gender> {
    let d = pid18[16];
    d.is_ascii_digit().then(|| {
        if (d - b'0') % 2 == 1 {
            Gender::Male
        } else {
            Gender::Female
        }
    })
}

/// Validates an id number (already trimmed and half-width), cross-checking the record's own
/// birth date and gender when it has them.
pub fn validate_pid(raw: &[u8], birth: Option<Date>, gender: Option<Gender>) -> PidCheck {
    let bad = |status| PidCheck {
        status,
        normalized: None,
    };
    let (pid, upgraded) = match raw.len() {
        0 => return bad(PidStatus::Missing),
        15 => match upgrade_pid_15(raw) {
            Some(p) => (p, true),
            None => return bad(PidStatus::BadFormat),
        },
        18 => {
            let mut p = [0u8; 18];
            p.copy_from_slice(raw);
            p[17] = p[17].to_ascii_uppercase();
            if !p[..17].iter().all(u8::is_ascii_digit) || !(p[17].is_ascii_digit() || p[17] == b'X')
            {
                return bad(PidStatus::BadFormat);
            }
            (p, false)
        }
        _ => return bad(PidStatus::BadFormat),
    };
    let with = |status| PidCheck {
        status,
        normalized: Some(pid),
    };
    if pid_check_char(&pid[..17]) != Some(pid[17]) {
        return with(PidStatus::BadCheck);
    }
    let Some(encoded_birth) = pid_birth_date(&pid) else {
        return with(PidStatus::BadBirthDate);
    };
    if birth.is_some_and(|b| b != encoded_birth) {
        return with(PidStatus::BirthMismatch);
    }
    if gender.is_some_and(|g| Some(g) != pid_gender(&pid)) {
        return with(PidStatus::GenderMismatch);
    }
    with(if upgraded {
        PidStatus::Upgraded15
    } else {
        PidStatus::Valid
    })
}

// ---------------------------------------------------------------------------------------------
// Unified social credit codes (GB 32100-2015) and organisation codes (GB 11714)

/// The 31 characters a USCC may contain (no I, O, S, V, Z).
pub const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

/// Value of each byte in the USCC alphabet, 255 for bytes outside it.
const USCC_VALUES: [u8; 256] = {
    let mut t = [255u8; 256];
    let mut i = 0;
    while i < USCC_ALPHABET.len() {
        t[USCC_ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn uscc_value(b: u8) -> Option<u32> {
    let v = USCC_VALUES[b as usize];
    (v != 255).then_some(u32::from(v))
}

/// The check character for the first 17 characters of a USCC.
pub fn uscc_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&b, w) in first17.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(b)? * w;
    }
    Some(USCC_ALPHABET[((31 - sum % 31) % 31) as usize])
}

/// The check character of a GB 11714 organisation code body (8 characters, digits or
/// letters A–Z valued 10–35).
pub fn org_code_check_char(body: &[u8]) -> Option<u8> {
    if body.len() != 8 {
        return None;
    }
    let mut sum = 0u32;
    for (&b, w) in body.iter().zip(ORG_WEIGHTS) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        c => b'0' + c as u8,
    })
}

/// Kinds of registration authority and entity encoded in a USCC's first two characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsccKind {
    /// `91`: an enterprise registered with market regulation.
    Enterprise,
    /// `92`: an individual business (个体工商户).
    IndividualBusiness,
    /// `93`: a farmers' specialised cooperative.
    Cooperative,
    /// `5x`: a social organisation registered with civil affairs.
    SocialOrg,
    /// Anything else that validates.
    Other,
}

/// Builds a valid USCC: authority/type prefix, 6-digit division, an 8-digit organisation code
/// body (its GB 11714 check is computed) and the GB 32100 check character.
pub fn make_uscc(prefix: [u8; 2], division: u32, org_body: u32) -> [u8; 18] {
    let mut out = [b'0'; 18];
    out[0] = prefix[0];
    out[1] = prefix[1];
    write_digits(&mut out[2..8], division % 1_000_000);
    write_digits(&mut out[8..16], org_body % 100_000_000);
    // The GB 11714 check character is one of 0-9 or X; X is not in the USCC alphabet, where
    // real codes carry it too, so map it to a fixed digit rather than produce an invalid code.
    let org_check = org_code_check_char(&out[8..16]).unwrap_or(b'0');
    out[16] = if org_check == b'X' { b'0' } else { org_check };
    out[17] = uscc_check_char(&out[..17]).unwrap_or(b'0');
    out
}

/// What a USCC (or a legacy registration number in its place) turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsccStatus {
    Valid,
    /// A 15-digit legacy registration number with a correct ISO 7064 check digit: a key for
    /// the legacy register, not a USCC.
    LegacyRegNo,
    Missing,
    BadFormat,
    BadCheck,
}

impl UsccStatus {
    pub const ALL: [UsccStatus; 5] = [
        UsccStatus::Valid,
        UsccStatus::LegacyRegNo,
        UsccStatus::Missing,
        UsccStatus::BadFormat,
        UsccStatus::BadCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UsccStatus::Valid => "valid",
            UsccStatus::LegacyRegNo => "legacy_reg_no",
            UsccStatus::Missing => "missing",
            UsccStatus::BadFormat => "bad_format",
            UsccStatus::BadCheck => "bad_check",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsccCheck {
    pub status: UsccStatus,
    /// The uppercased code (18 characters), or the 15-digit registration number padded with
    /// nothing: `normalized_len` says how many bytes are meaningful.
    pub normalized: Option<[u8; 18]>,
    pub normalized_len: u8,
}

impl UsccCheck {
    pub fn normalized_str(&self) -> Option<&str> {
        self.normalized
            .as_ref()
            .and_then(|n| std::str::from_utf8(&n[..self.normalized_len as usize]).ok())
    }

    pub fn kind(&self) -> Option<UsccKind> {
        let n = self
            .normalized
            .filter(|_| self.status == UsccStatus::Valid)?;
        Some(match (n[0], n[1]) {
            (b'9', b'1') => UsccKind::Enterprise,
            (b'9', b'2') => UsccKind::IndividualBusiness,
            (b'9', b'3') => UsccKind::Cooperative,
            (b'5', _) => UsccKind::SocialOrg,
            _ => UsccKind::Other,
        })
    }
}

/// Validates a USCC, or a legacy 15-digit registration number in its place.
pub fn validate_uscc(raw: &[u8]) -> UsccCheck {
    let bad = |status| UsccCheck {
        status,
        normalized: None,
        normalized_len: 0,
    };
    match raw.len() {
        0 => bad(UsccStatus::Missing),
        15 => {
            if reg_no_is_valid(raw) {
                let mut n = [0u8; 18];
                n[..15].copy_from_slice(raw);
                UsccCheck {
                    status: UsccStatus::LegacyRegNo,
                    normalized: Some(n),
                    normalized_len: 15,
                }
            } else {
                bad(UsccStatus::BadFormat)
            }
        }
        18 => {
            let mut n = [0u8; 18];
            for (o, b) in n.iter_mut().zip(raw) {
                *o = b.to_ascii_uppercase();
            }
            if !n.iter().all(|&b| uscc_value(b).is_some()) {
                return bad(UsccStatus::BadFormat);
            }
            let status = if uscc_check_char(&n[..17]) == Some(n[17]) {
                UsccStatus::Valid
            } else {
                UsccStatus::BadCheck
            };
            UsccCheck {
                status,
                normalized: Some(n),
                normalized_len: 18,
            }
        }
        _ => bad(UsccStatus::BadFormat),
    }
}

/// Whether the organisation code inside a valid USCC (positions 9–17) carries a correct
/// GB 11714 check character. Advisory: individual businesses' codes often do not.
pub fn uscc_org_code_ok(uscc: &[u8; 18]) -> bool {
    match org_code_check_char(&uscc[8..16]) {
        Some(b'X') => uscc[16] == b'0',
        Some(c) => uscc[16] == c,
        None => false,
    }
}

/// ISO 7064 MOD 11,10 check digit for the first 14 digits of a registration number.
pub fn reg_no_check_digit(first14: &[u8]) -> Option<u8> {
    if first14.len() != 14 {
        return None;
    }
    let mut p = 10u32;
    for &b in first14 {
        if !b.is_ascii_digit() {
            return None;
        }
        let s = p % 11 + u32::from(b - b'0');
        let r = s % 10;
        p = if r == 0 { 10 } else { r } * 2;
    }
    // Find c with (p mod 11 + c) mod 10 == 1.
    (0..10u32)
        .find(|c| (p % 11 + c) % 10 == 1)
        .map(|c| b'0' + c as u8)
}

/// Whether a 15-digit legacy registration number has a correct check digit.
pub fn reg_no_is_valid(raw: &[u8]) -> bool {
    raw.len() == 15
        && raw.iter().all(u8::is_ascii_digit)
        && reg_no_check_digit(&raw[..14]) == Some(raw[14])
}

/// Builds a valid 15-digit legacy registration number.
pub fn make_reg_no(division: u32, seq: u64) -> [u8; 15] {
    let mut out = [b'0'; 15];
    write_digits(&mut out[0..6], division % 1_000_000);
    let mut s = seq % 100_000_000;
    for i in (6..14).rev() {
        out[i] = b'0' + (s % 10) as u8;
        s /= 10;
    }
    out[14] = reg_no_check_digit(&out[..14]).unwrap_or(b'0');
    out
}

fn write_digits(out: &mut [u8], mut v: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn known_good_id_numbers() {
        // The standard's worked example and widely published test vectors.
        // The standard's worked examples.
        for good in ["11010519491231002X", "440524188001010014"] {
            let first17 = &good.as_bytes()[..17];
            assert_eq!(pid_check_char(first17), Some(good.as_bytes()[17]), "{good}");
            assert_eq!(
                validate_pid(good.as_bytes(), None, None).status,
                PidStatus::Valid
            );
        }
        let born = Date::from_ymd(1949, 12, 31).unwrap();
        let c = validate_pid(b"11010519491231002x", Some(born), Some(Gender::Female));
        assert_eq!(c.status, PidStatus::Valid);
        assert_eq!(s(&c.normalized.unwrap()), "11010519491231002X");
    }

    #[test]
    fn known_bad_id_numbers() {
        assert_eq!(
            validate_pid(b"110105194912310021", None, None).status,
            PidStatus::BadCheck
        );
        // Two adjacent digits transposed.
        assert_eq!(
            validate_pid(b"11010519491231020X", None, None).status,
            PidStatus::BadCheck
        );
        assert_eq!(validate_pid(b"", None, None).status, PidStatus::Missing);
        assert_eq!(
            validate_pid(b"1101051949123100", None, None).status,
            PidStatus::BadFormat
        );
        assert_eq!(
            validate_pid(b"11010519491231002Y", None, None).status,
            PidStatus::BadFormat
        );
        // Check character right, but 1949-02-30 does not exist.
        let mut p = *b"110105194902300020";
        p[17] = pid_check_char(&p[..17]).unwrap();
        assert_eq!(validate_pid(&p, None, None).status, PidStatus::BadBirthDate);
    }

    #[test]
    fn cross_checks_birth_date_and_gender() {
        let born = Date::from_ymd(1949, 12, 31).unwrap();
        let other = Date::from_ymd(1949, 12, 30).unwrap();
        let id = b"11010519491231002X";
        assert_eq!(
            validate_pid(id, Some(other), None).status,
            PidStatus::BirthMismatch
        );
        assert_eq!(
            validate_pid(id, Some(born), Some(Gender::Male)).status,
            PidStatus::GenderMismatch
        );
        assert!(!PidStatus::BirthMismatch.is_key());
    }

    #[test]
    fn upgrades_15_digit_ids() {
        // 110105491231002 is the 15-digit form of 11010519491231002X.
        let c = validate_pid(b"110105491231002", None, Some(Gender::Female));
        assert_eq!(c.status, PidStatus::Upgraded15);
        assert_eq!(s(&c.normalized.unwrap()), "11010519491231002X");
        let full = make_pid(411403, Date::from_ymd(1962, 8, 9).unwrap(), 241);
        assert_eq!(upgrade_pid_15(&pid_to_15(&full)), Some(full));
        assert_eq!(
            validate_pid(b"11010549123100A", None, None).status,
            PidStatus::BadFormat
        );
    }

    #[test]
    fn uscc_vectors() {
        // Published valid codes.
        // A published code (its organisation code M000100Y-4 checks too).
        let c = validate_uscc(b"91350100M000100Y43");
        assert_eq!(c.status, UsccStatus::Valid);
        assert!(uscc_org_code_ok(&c.normalized.unwrap()));
        assert_eq!(
            validate_uscc(b"91350100M000100Y44").status,
            UsccStatus::BadCheck
        );
        assert_eq!(
            validate_uscc(b"91350100M000100I43").status,
            UsccStatus::BadFormat
        );
        assert_eq!(validate_uscc(b"").status, UsccStatus::Missing);
        assert_eq!(
            validate_uscc(b"91350100m000100y43").status,
            UsccStatus::Valid
        );
        let built = make_uscc(*b"92", 411402, 12_345_678);
        let c = validate_uscc(&built);
        assert_eq!(c.status, UsccStatus::Valid);
        assert_eq!(c.kind(), Some(UsccKind::IndividualBusiness));
        assert!(uscc_org_code_ok(&built));
    }

    #[test]
    fn org_code_vectors() {
        // D2143569-X is the GB 11714 example; M000100Y-4 is inside 91350100M000100Y43.
        assert_eq!(org_code_check_char(b"D2143569"), Some(b'X'));
        assert_eq!(org_code_check_char(b"M000100Y"), Some(b'4'));
    }

    #[test]
    fn legacy_registration_numbers() {
        let r = make_reg_no(411402, 1234);
        assert!(reg_no_is_valid(&r));
        let c = validate_uscc(&r);
        assert_eq!(c.status, UsccStatus::LegacyRegNo);
        assert_eq!(c.normalized_str(), Some(s(&r)));
        let mut broken = r;
        broken[14] = if r[14] == b'9' { b'0' } else { r[14] + 1 };
        assert_eq!(validate_uscc(&broken).status, UsccStatus::BadFormat);
        // MOD 11,10 catches every single substituted digit.
        for pos in 0..14 {
            let mut typo = r;
            typo[pos] = if r[pos] == b'9' { b'0' } else { r[pos] + 1 };
            assert!(!reg_no_is_valid(&typo), "substitution at {pos}");
        }
    }

    #[test]
    fn divisions() {
        assert_eq!(division_by_name("梁园区"), Some(411402));
        assert_eq!(division_by_name("永城"), Some(411481));
        assert_eq!(division_by_name("睢县"), Some(411422));
        assert_eq!(division_name(411426), Some("夏邑县"));
    }
}
