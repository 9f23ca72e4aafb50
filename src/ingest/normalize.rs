//! Normalization of raw department values (DESIGN.md §3.2): character width, whitespace,
//! traditional → simplified characters, dates, months, phone numbers, amounts, and addresses
//! split into components.
//!
//! Every function takes the raw text and returns either the normalized value or a
//! [`ValueError`] saying why the value is impossible. "Empty" is not an error: it is missing,
//! and missing stays missing.

use crate::date::{Date, Month};
use crate::ids::{CITY_CODE, division_by_name};

/// Why a raw value could not be normalized. The message is a sentence a data steward can act
/// on; it is written to the quarantine file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("date {0:?} is not a calendar date")]
    ImpossibleDate(String),
    #[error(
        "date {0:?} is in none of the accepted formats (1985-03-07, 19850307, 1985/3/7, 1985年3月7日)"
    )]
    DateFormat(String),
    #[error("month {0:?} is in none of the accepted formats (2023-01, 202301, 2023/1, 2023年1月)")]
    MonthFormat(String),
    #[error("amount {0:?} is not a decimal number with at most two fraction digits")]
    AmountFormat(String),
    #[error("amount {0:?} is negative")]
    NegativeAmount(String),
    #[error("number {0:?} is not an integer")]
    IntegerFormat(String),
    #[error("number {0:?} is not a decimal number")]
    NumberFormat(String),
    #[error("flag {0:?} is none of 1/0, true/false, yes/no, 是/否")]
    FlagFormat(String),
    #[error("value {value:?} is not one of the declared categories")]
    Category { value: String },
}

// ---------------------------------------------------------------------------------------------
// Characters

/// Full-width ASCII (U+FF01–U+FF5E) to half-width, ideographic and other Unicode spaces to a
/// plain space; leading and trailing whitespace removed, runs of whitespace collapsed to one.
pub fn fold_width(raw: &str) -> String {
    if !needs_fold(raw.as_bytes()) {
        return raw.to_string();
    }
    fold_chars(raw)
}

/// [`fold_width`] a character at a time.
fn fold_chars(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.chars() {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' | '\u{00A0}' | '\u{2002}'..='\u{200B}' | '\t' | '\r' | '\n' => ' ',
            _ => c,
        };
        if c == ' ' {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

/// Whether [`fold_width`] would change `b`: a leading, trailing or doubled space, an ASCII
/// control whitespace, or a lead byte of the characters it folds (U+00A0 and U+0080–U+00BF
/// begin with 0xC2, U+2002–U+200B with 0xE2, full-width ASCII with 0xEF; U+3000 is E3 80
/// 80). Conservative: a few characters that need nothing (`·`, U+00B7) take the slow path.
fn needs_fold(b: &[u8]) -> bool {
    let mut after_space = true;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b' ' => {
                if after_space {
                    return true;
                }
                after_space = true;
            }
            b'\t' | b'\n' | b'\r' | 0xC2 | 0xE2 | 0xEF => return true,
            0xE3 if b.get(i + 1..i + 3) == Some(&[0x80, 0x80][..]) => return true,
            _ => after_space = false,
        }
    }
    after_space && !b.is_empty()
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{2FFFF}')
}

/// Traditional → simplified, character by character (names and addresses, never ids).
/// Text with no character the conversion could change (most of it: the departments write
/// simplified) is copied whole.
pub fn to_simplified(s: &str) -> String {
    if s.is_ascii() || !s.chars().any(traditional) {
        return s.to_string();
    }
    fast2s::convert(s)
}

/// The conversion's characters (every one it may change) in U+3400–U+FFFF, as bits.
static TRADITIONAL: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();

/// Whether `c` is one `fast2s` may change: one it changes on its own, or one it changes only
/// beside certain others (藉口, 看著). It only changes characters of three UTF-8 bytes.
fn traditional(c: char) -> bool {
    const FIRST: u32 = 0x3400;
    let bits = TRADITIONAL.get_or_init(|| {
        let mut bits = vec![0u64; (0x1_0000 - FIRST as usize).div_ceil(64)];
        let mut one = String::with_capacity(4);
        for c in (FIRST..0x1_0000).filter_map(char::from_u32) {
            one.clear();
            one.push(c);
            if fast2s::convert(&one) != one || matches!(c, '藉' | '著') {
                let i = (c as u32 - FIRST) as usize;
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        bits
    });
    let i = match (c as u32).checked_sub(FIRST) {
        Some(i) if c.len_utf8() == 3 => i as usize,
        _ => return false,
    };
    bits.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
}

/// A person's or enterprise's name: width folded, traditional folded to simplified; for Chinese
/// names every space removed and the interpunct of minority names unified to `·`; for Latin
/// names lowercased with single spaces.
pub fn normalize_name(raw: &str) -> String {
    // The common case, a name of Han characters only, needs just the traditional fold.
    if !raw.is_empty() && raw.chars().all(is_han) {
        return to_simplified(raw);
    }
    let folded = fold_width(raw);
    if folded.is_ascii() {
        return folded.to_ascii_lowercase();
    }
    let simplified = to_simplified(&folded);
    let has_han = simplified.chars().any(is_han);
    simplified
        .chars()
        .filter(|&c| !(has_han && c == ' '))
        .map(|c| match c {
            '•' | '・' | '．' | '.' | '‧' | '∙' => '·',
            _ => c,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Dates and months

fn split_numbers(s: &str, out: &mut [u32; 3]) -> Option<usize> {
    let mut n = 0;
    let mut cur: Option<u32> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            cur = Some(cur.unwrap_or(0).checked_mul(10)?.checked_add(d)?);
        } else {
            if let Some(v) = cur.take() {
                *out.get_mut(n)? = v;
                n += 1;
            }
            if !matches!(c, '-' | '/' | '.' | '年' | '月' | '日' | '号' | ' ') {
                return None;
            }
        }
    }
    if let Some(v) = cur {
        *out.get_mut(n)? = v;
        n += 1;
    }
    Some(n)
}

/// Parses a date in any of the forms departments export: `1985-03-07`, `19850307`,
/// `1985/3/7`, `1985.3.7`, `1985年3月7日`, optionally followed by a time (`1985-03-07
/// 00:00:00`). Empty → `Ok(None)`.
pub fn parse_date(raw: &str) -> Result<Option<Date>, ValueError> {
    // Fast path: `YYYY-MM-DD` and `YYYYMMDD`, the forms most exports use.
    let b = raw.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        let d = |i: usize| b[i].wrapping_sub(b'0') as u32;
        if [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| d(i) < 10) {
            let (y, m, day) = (
                d(0) * 1000 + d(1) * 100 + d(2) * 10 + d(3),
                d(5) * 10 + d(6),
                d(8) * 10 + d(9),
            );
            return Date::from_ymd(y as i32, m, day)
                .map(Some)
                .ok_or_else(|| ValueError::ImpossibleDate(raw.to_string()));
        }
    }
    let s = fold_width(raw);
    if s.is_empty() {
        return Ok(None);
    }
    // Drop a trailing time of day.
    let s = match s.split_once([' ', 'T']) {
        Some((d, t)) if t.contains(':') => d,
        _ => s.as_str(),
    };
    let b = s.as_bytes();
    let (y, m, d) = if b.len() == 8 && b.iter().all(u8::is_ascii_digit) {
        let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
        (n(0..4), n(4..6), n(6..8))
    } else {
        let mut parts = [0u32; 3];
        match split_numbers(s, &mut parts) {
            Some(3) if parts[0] >= 1000 => (parts[0], parts[1], parts[2]),
            _ => return Err(ValueError::DateFormat(raw.to_string())),
        }
    };
    Date::from_ymd(y as i32, m, d)
        .map(Some)
        .ok_or_else(|| ValueError::ImpossibleDate(raw.to_string()))
}

/// Parses a month: `2023-01`, `202301`, `2023/1`, `2023年1月`, or a full date (its month).
pub fn parse_month(raw: &str) -> Result<Option<Month>, ValueError> {
    // Fast path: `YYYY-MM`.
    let b = raw.as_bytes();
    if b.len() == 7 && b[4] == b'-' {
        let d = |i: usize| b[i].wrapping_sub(b'0') as u32;
        if [0, 1, 2, 3, 5, 6].iter().all(|&i| d(i) < 10) {
            let (y, m) = (
                d(0) * 1000 + d(1) * 100 + d(2) * 10 + d(3),
                d(5) * 10 + d(6),
            );
            return Month::from_ym(y as i32, m)
                .map(Some)
                .ok_or_else(|| ValueError::MonthFormat(raw.to_string()));
        }
    }
    let s = fold_width(raw);
    if s.is_empty() {
        return Ok(None);
    }
    let b = s.as_bytes();
    let (y, m) = if b.len() == 6 && b.iter().all(u8::is_ascii_digit) {
        (
            s[0..4].parse::<u32>().unwrap_or(0),
            s[4..6].parse::<u32>().unwrap_or(0),
        )
    } else {
        let mut parts = [0u32; 3];
        match split_numbers(&s, &mut parts) {
            Some(2) if parts[0] >= 1000 => (parts[0], parts[1]),
            Some(3) | Some(1) => {
                return parse_date(raw)
                    .map_err(|_| ValueError::MonthFormat(raw.to_string()))
                    .map(|d| d.map(Date::month));
            }
            _ => return Err(ValueError::MonthFormat(raw.to_string())),
        }
    };
    Month::from_ym(y as i32, m)
        .map(Some)
        .ok_or_else(|| ValueError::MonthFormat(raw.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// A plain non-negative decimal (`123`, `123.4`) with at most `scale` fraction digits, in units
/// of 10^-scale, parsed in one pass; `None` for anything else (the slow path decides).
fn plain_decimal(b: &[u8], scale: u32) -> Option<i64> {
    if b.is_empty() || b.len() > 17 {
        return None;
    }
    let mut v: i64 = 0;
    let mut frac: Option<u32> = None;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            v = v * 10 + i64::from(d);
            if let Some(f) = frac.as_mut() {
                *f += 1;
            }
        } else if c == b'.' && frac.is_none() {
            frac = Some(0);
        } else {
            return None;
        }
    }
    let digits = frac.unwrap_or(0);
    if digits > scale || frac == Some(0) || b[0] == b'.' {
        return None;
    }
    Some(v * 10i64.pow(scale - digits))
}

/// Parses a money amount into fen (hundredths): `1234.5`, `1,234.50`, `¥1234`, `-12.00`
/// (refused unless `allow_negative`). Empty → `Ok(None)`.
pub fn parse_amount(raw: &str, allow_negative: bool) -> Result<Option<i64>, ValueError> {
    // Fast path: plain `123` or `123.4` / `123.45`, what almost every export writes.
    if let Some(v) = plain_decimal(raw.as_bytes(), 2) {
        return Ok(Some(v));
    }
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let err = || ValueError::AmountFormat(raw.to_string());
    let mut neg = false;
    let mut int: i64 = 0;
    let mut frac: i64 = 0;
    let mut frac_digits = 0;
    let mut seen_dot = false;
    let mut seen_digit = false;
    for (i, c) in s.char_indices() {
        match c {
            '-' | '－' if i == 0 => neg = true,
            '+' if i == 0 => {}
            '¥' | '￥' if !seen_digit => {}
            ',' if !seen_dot && seen_digit => {}
            '.' if !seen_dot => seen_dot = true,
            '0'..='9' => {
                seen_digit = true;
                let d = i64::from(c as u8 - b'0');
                if seen_dot {
                    frac_digits += 1;
                    if frac_digits > 2 {
                        return Err(err());
                    }
                    frac = frac * 10 + d;
                } else {
                    int = int
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(d))
                        .ok_or_else(err)?;
                }
            }
            _ => return Err(err()),
        }
    }
    if !seen_digit {
        return Err(err());
    }
    if frac_digits == 1 {
        frac *= 10;
    }
    let fen = int
        .checked_mul(100)
        .and_then(|v| v.checked_add(frac))
        .ok_or_else(err)?;
    if neg && fen != 0 {
        if !allow_negative {
            return Err(ValueError::NegativeAmount(raw.to_string()));
        }
        return Ok(Some(-fen));
    }
    Ok(Some(fen))
}

/// Parses an integer (`12`, `-3`, `1,200`). Empty → `Ok(None)`.
pub fn parse_int(raw: &str) -> Result<Option<i64>, ValueError> {
    let s = fold_width(raw);
    if s.is_empty() {
        return Ok(None);
    }
    let cleaned: String = s.chars().filter(|&c| c != ',').collect();
    cleaned
        .parse::<i64>()
        .map(Some)
        .map_err(|_| ValueError::IntegerFormat(raw.to_string()))
}

/// Parses a decimal number into thousandths (`12.5` → 12500), for quantities such as kWh,
/// cubic metres or square metres. Empty → `Ok(None)`.
pub fn parse_milli(raw: &str) -> Result<Option<i64>, ValueError> {
    // Fast path: plain `123`, `123.4`, `123.456`.
    if let Some(v) = plain_decimal(raw.as_bytes(), 3) {
        return Ok(Some(v));
    }
    let s = fold_width(raw);
    if s.is_empty() {
        return Ok(None);
    }
    let err = || ValueError::NumberFormat(raw.to_string());
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.as_str()),
    };
    let (ip, fp) = body.split_once('.').unwrap_or((body, ""));
    if ip.is_empty() && fp.is_empty() {
        return Err(err());
    }
    let mut v: i64 = 0;
    for c in ip.chars().filter(|&c| c != ',') {
        let d = c.to_digit(10).ok_or_else(err)?;
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(d)))
            .ok_or_else(err)?;
    }
    let mut scale = 100;
    let mut frac = 0;
    for c in fp.chars() {
        let d = i64::from(c.to_digit(10).ok_or_else(err)?);
        frac += d * scale;
        scale /= 10;
    }
    let milli = v
        .checked_mul(1000)
        .and_then(|v| v.checked_add(frac))
        .ok_or_else(err)?;
    Ok(Some(if neg { -milli } else { milli }))
}

/// Parses a boolean flag. Empty → `Ok(None)`.
pub fn parse_flag(raw: &str) -> Result<Option<bool>, ValueError> {
    match raw {
        "1" => return Ok(Some(true)),
        "0" => return Ok(Some(false)),
        "" => return Ok(None),
        _ => {}
    }
    let s = fold_width(raw).to_ascii_lowercase();
    match s.as_str() {
        "" => Ok(None),
        "1" | "true" | "t" | "y" | "yes" | "是" | "有" => Ok(Some(true)),
        "0" | "false" | "f" | "n" | "no" | "否" | "无" => Ok(Some(false)),
        _ => Err(ValueError::FlagFormat(raw.to_string())),
    }
}

// ---------------------------------------------------------------------------------------------
// Phones

/// Normalizes a phone number: strips `+86` / `0086` / `86`, dashes, spaces and brackets.
/// Mobiles become 11 digits starting with `1`; landlines become area code + number
/// (`0370` + 7–8 digits; a bare local number gets Shangqiu's `0370`). Anything else → `None`.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let s = fold_width(raw);
    let mut digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    if digits.starts_with("0086") {
        digits.drain(..4);
    } else if digits.len() == 13 && digits.starts_with("86") {
        digits.drain(..2);
    }
    let b = digits.as_bytes();
    match b.len() {
        11 if b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) => Some(digits),
        10..=12 if b[0] == b'0' => Some(digits),
        7 | 8 if b[0] != b'0' && b[0] != b'1' => Some(format!("0370{digits}")),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses

/// An address split into components. Every component is optional; `rest` keeps what could
/// not be placed, so nothing of the raw text is lost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub province: String,
    pub city: String,
    pub district: String,
    /// Six-digit division code of the district or county, when it is one of the city's.
    pub region: Option<u32>,
    pub town: String,
    pub village: String,
    pub road: String,
    pub number: String,
    pub estate: String,
    pub building: String,
    pub unit: String,
    pub room: String,
    pub rest: String,
}

impl Address {
    /// The canonical text: components in order, with fixed suffixes, so that two spellings
    /// of the same place normalize to the same string.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        for (part, suffix) in [
            (&self.province, ""),
            (&self.city, ""),
            (&self.district, ""),
            (&self.town, ""),
            (&self.village, ""),
            (&self.road, ""),
            (&self.number, "号"),
            (&self.estate, ""),
            (&self.building, "号楼"),
            (&self.unit, "单元"),
            (&self.room, "室"),
            (&self.rest, ""),
        ] {
            if !part.is_empty() {
                s.push_str(part);
                s.push_str(suffix);
            }
        }
        s
    }
}

/// Value of a Chinese numeral up to 9999 (`五` → 5, `二十三` → 23, `一百零二` → 102), or of
/// ASCII digits.
pub fn chinese_number(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total = 0u32;
    let mut cur = 0u32;
    let mut any = false;
    for c in s.chars() {
        let d = match c {
            '零' | '〇' => Some(0),
            '一' | '壹' => Some(1),
            '二' | '两' | '贰' => Some(2),
            '三' | '叁' => Some(3),
            '四' | '肆' => Some(4),
            '五' | '伍' => Some(5),
            '六' | '陆' => Some(6),
            '七' | '柒' => Some(7),
            '八' | '捌' => Some(8),
            '九' | '玖' => Some(9),
            _ => None,
        };
        if let Some(d) = d {
            cur = d;
            any = true;
            continue;
        }
        let unit = match c {
            '十' | '拾' => 10,
            '百' | '佰' => 100,
            '千' | '仟' => 1000,
            _ => return None,
        };
        total += if cur == 0 && unit == 10 { 1 } else { cur } * unit;
        cur = 0;
        any = true;
    }
    any.then_some(total + cur)
}

fn is_num_char(c: char) -> bool {
    c.is_ascii_digit() || "零〇一二两三四五六七八九十百千".contains(c)
}

const ROAD_SUFFIXES: [&str; 7] = ["大道", "大街", "路", "街", "道", "巷", "胡同"];
const ESTATE_SUFFIXES: [&str; 14] = [
    "小区", "花园", "家园", "公寓", "大厦", "广场", "新村", "苑", "院", "城", "府", "庭", "湾",
    "居",
];

/// Splits an address into components. Tolerates missing parts, full-width digits, traditional
/// characters, Chinese numerals (`五号楼二单元`), dash forms (`5-2-301`) and the usual
/// synonyms (`栋` / `幢` / `座` / `号楼`).
pub fn parse_address(raw: &str) -> Address {
    let folded = to_simplified(&fold_width(raw));
    let text = if folded.chars().any(is_han) {
        folded.replace(' ', "")
    } else {
        folded
    };
    let mut a = Address::default();
    let mut rest: &str = &text;

    // Administrative prefix.
    if let Some(i) = rest.find("省") {
        a.province = rest[..i + '省'.len_utf8()].to_string();
        rest = &rest[i + '省'.len_utf8()..];
    } else if let Some(r) = rest.strip_prefix("河南") {
        a.province = "河南省".to_string();
        rest = r;
    }
    if let Some(r) = rest.strip_prefix("商丘市") {
        a.city = "商丘市".to_string();
        rest = r;
    } else if let Some(r) = rest.strip_prefix("商丘") {
        a.city = "商丘市".to_string();
        rest = r;
    }
    // A district or county of the city, full or short name.
    for &(code, full) in crate::ids::DIVISIONS.iter() {
        let short = full.trim_end_matches(['区', '县', '市']);
        if let Some(r) = rest.strip_prefix(full) {
            a.district = full.to_string();
            a.region = Some(code);
            rest = r;
            break;
        }
        // Short form only when followed by something that is not the suffix itself.
        if short.chars().count() >= 2
            && let Some(r) = rest.strip_prefix(short)
        {
            a.district = full.to_string();
            a.region = Some(code);
            rest = r;
            break;
        }
    }
    if a.district.is_empty() {
        // Some other district or county.
        for suffix in ['区', '县'] {
            if let Some(i) = rest.find(suffix) {
                let cand = &rest[..i + suffix.len_utf8()];
                if (2..=5).contains(&cand.chars().count()) {
                    a.district = cand.to_string();
                    a.region = division_by_name(cand);
                    rest = &rest[i + suffix.len_utf8()..];
                    break;
                }
            }
        }
    }
    if !a.city.is_empty() && a.region.is_none() && a.district.is_empty() {
        a.region = Some(CITY_CODE);
    }
    // Town / township / sub-district, then village.
    for suffix in ["街道办事处", "街道", "镇", "乡"] {
        if let Some(i) = rest.find(suffix) {
            let cand = &rest[..i + suffix.len()];
            if (2..=8).contains(&cand.chars().count()) && !cand.contains(['路', '号']) {
                a.town = cand.to_string();
                rest = &rest[i + suffix.len()..];
                break;
            }
        }
    }
    if let Some(i) = rest.find('村') {
        let cand = &rest[..i + '村'.len_utf8()];
        if (2..=8).contains(&cand.chars().count()) && !cand.contains(['路', '号']) {
            a.village = cand.to_string();
            rest = &rest[i + '村'.len_utf8()..];
            // A villagers' group (村民小组) belongs to the village, and the door number after
            // it is a door number: "王庄村3组12号", "王庄村三组12号".
            let group: String = rest.chars().take_while(|&c| is_num_char(c)).collect();
            if !group.is_empty()
                && let Some(r) = rest[group.len()..].strip_prefix('组')
            {
                let n = chinese_number(&group).map_or(group.clone(), |n| n.to_string());
                a.village = format!("{}{n}组", a.village);
                rest = r;
                let num: String = rest.chars().take_while(|&c| is_num_char(c)).collect();
                if let Some(r) = rest[num.len()..].strip_prefix('号')
                    && !num.is_empty()
                {
                    a.number = chinese_number(&num).map_or(num.clone(), |n| n.to_string());
                    rest = r;
                }
            }
        }
    }
    // Road and door number: "凯旋路123号".
    for suffix in ROAD_SUFFIXES {
        if let Some(i) = rest.find(suffix) {
            let end = i + suffix.len();
            let cand = &rest[..end];
            if (2..=10).contains(&cand.chars().count()) {
                a.road = cand.to_string();
                rest = &rest[end..];
                // Door number directly after the road.
                let num: String = rest.chars().take_while(|&c| is_num_char(c)).collect();
                if !num.is_empty() {
                    let after = &rest[num.len()..];
                    if let Some(r) = after.strip_prefix('号')
                        && !r.starts_with('楼')
                    {
                        a.number = chinese_number(&num).map_or(num.clone(), |n| n.to_string());
                        rest = r;
                    }
                }
                break;
            }
        }
    }
    // Dash form: 5-2-301 / 5栋2-301.
    parse_building_unit_room(rest, &mut a);
    a
}

fn parse_building_unit_room(mut rest: &str, a: &mut Address) {
    // Estate: everything before the first numeral group, when it ends like an estate name.
    let first_num = rest
        .find(|c: char| is_num_char(c) || c == '-')
        .unwrap_or(rest.len());
    let head = &rest[..first_num];
    if !head.is_empty() {
        if ESTATE_SUFFIXES.iter().any(|s| head.ends_with(s)) || first_num < rest.len() {
            a.estate = head.to_string();
            rest = &rest[first_num..];
        } else {
            a.rest = head.to_string();
            return;
        }
    }
    // Numeral groups with their markers.
    let mut groups: Vec<(String, String)> = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let mut leftover = String::new();
    while let Some(&(i, c)) = chars.peek() {
        if is_num_char(c) {
            let start = i;
            let mut end = i;
            while let Some(&(j, c2)) = chars.peek() {
                if is_num_char(c2) {
                    end = j + c2.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let num = rest[start..end].to_string();
            let marker_start = end;
            let mut marker_end = end;
            for m in [
                "号楼", "单元", "栋", "幢", "座", "楼", "室", "号", "户", "-", "－",
            ] {
                if rest[marker_start..].starts_with(m) {
                    marker_end = marker_start + m.len();
                    break;
                }
            }
            let marker = rest[marker_start..marker_end].to_string();
            while let Some(&(j, _)) = chars.peek() {
                if j < marker_end {
                    chars.next();
                } else {
                    break;
                }
            }
            groups.push((num, marker));
        } else {
            leftover.push(c);
            chars.next();
        }
    }
    let value = |n: &str| chinese_number(n).map_or(n.to_string(), |v| v.to_string());
    let mut plain: Vec<String> = Vec::new();
    for (num, marker) in &groups {
        match marker.as_str() {
            "号楼" | "栋" | "幢" | "座" => a.building = value(num),
            "单元" => a.unit = value(num),
            "室" | "户" => a.room = value(num),
            "楼" if a.building.is_empty() => a.building = value(num),
            _ => plain.push(value(num)),
        }
    }
    // Unmarked numbers fill building, unit, room in order of what is still empty, from the
    // right: the last is the room.
    if let Some(last) = plain.pop()
        && a.room.is_empty()
    {
        a.room = last;
    }
    for n in plain {
        if a.building.is_empty() {
            a.building = n;
        } else if a.unit.is_empty() {
            a.unit = n;
        } else {
            a.rest.push_str(&n);
        }
    }
    a.rest.push_str(&leftover);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> Option<Date> {
        Date::from_ymd(y, m, day)
    }

    #[test]
    fn width_and_whitespace() {
        assert_eq!(fold_width("  ＡＢＣ１２３　 x\t y "), "ABC123 x y");
        // Text with nothing to fold is copied whole.
        assert_eq!(
            fold_width("河南省商丘市 睢阳区 12号"),
            "河南省商丘市 睢阳区 12号"
        );
        assert_eq!(fold_width("阿依·买买提"), "阿依·买买提");
        assert_eq!(fold_width("４１１４０２"), "411402");
    }

    #[test]
    fn simplified_copies_only_what_has_nothing_to_convert() {
        assert_eq!(to_simplified("陳國華"), "陈国华");
        assert_eq!(to_simplified("张伟"), "张伟");
        // Changed only beside certain characters: still converted there.
        assert_eq!(to_simplified("藉口"), fast2s::convert("藉口"));
        assert_eq!(to_simplified("看著"), fast2s::convert("看著"));
        // Every character of U+3400–U+FFFF alone, and beside one that changes in context.
        for c in (0x3400u32..0x1_0000).filter_map(char::from_u32) {
            for s in [
                c.to_string(),
                format!("{c}口"),
                format!("看{c}"),
                format!("{c}麻"),
            ] {
                assert_eq!(to_simplified(&s), fast2s::convert(&s), "{s}");
            }
        }
    }

    proptest::proptest! {
        /// The whole-text copy is taken only where folding a character at a time changes
        /// nothing.
        #[test]
        fn fold_width_copies_only_what_needs_no_folding(
            chars in proptest::collection::vec(
                proptest::sample::select(vec![
                    'a', '1', ' ', '\t', '\n', '\r', '张', '·', '\u{00A0}', '\u{3000}', '\u{3001}',
                    '\u{2003}', '\u{2010}', 'Ａ', '～', '\u{FF61}', '号',
                ]),
                0..12,
            )
        ) {
            let s: String = chars.into_iter().collect();
            proptest::prop_assert_eq!(fold_width(&s), fold_chars(&s), "{:?}", s);
        }
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name(" 张 伟 "), "张伟");
        assert_eq!(normalize_name("張偉"), "张伟");
        assert_eq!(normalize_name("陳國華"), "陈国华");
        assert_eq!(normalize_name("阿依古丽•买买提"), "阿依古丽·买买提");
        assert_eq!(normalize_name("  John   SMITH "), "john smith");
        assert_eq!(normalize_name("ＬＩ　Ｍｉｎｇ"), "li ming");
    }

    #[test]
    fn dates_in_every_format() {
        for s in [
            "1985-03-07",
            "19850307",
            "1985/3/7",
            "1985年3月7日",
            "1985.03.07",
            "1985-03-07 00:00:00",
            "１９８５－０３－０７",
        ] {
            assert_eq!(parse_date(s), Ok(d(1985, 3, 7)), "{s}");
        }
        assert_eq!(parse_date(""), Ok(None));
        assert_eq!(parse_date("  "), Ok(None));
        assert!(matches!(
            parse_date("1985-02-30"),
            Err(ValueError::ImpossibleDate(_))
        ));
        assert!(matches!(
            parse_date("19851301"),
            Err(ValueError::ImpossibleDate(_))
        ));
        assert!(matches!(
            parse_date("07/03/1985"),
            Err(ValueError::DateFormat(_))
        ));
        assert!(matches!(
            parse_date("yesterday"),
            Err(ValueError::DateFormat(_))
        ));
    }

    #[test]
    fn months_in_every_format() {
        let m = Month::from_ym(2023, 1);
        for s in ["2023-01", "202301", "2023/1", "2023年1月", "2023-01-15"] {
            assert_eq!(parse_month(s), Ok(m), "{s}");
        }
        assert!(parse_month("2023-13").is_err());
        assert!(parse_month("abc").is_err());
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("1234.5", false), Ok(Some(123_450)));
        assert_eq!(parse_amount("1,234.56", false), Ok(Some(123_456)));
        assert_eq!(parse_amount("¥80", false), Ok(Some(8_000)));
        assert_eq!(parse_amount("", false), Ok(None));
        assert!(matches!(
            parse_amount("-12.00", false),
            Err(ValueError::NegativeAmount(_))
        ));
        assert_eq!(parse_amount("-12.00", true), Ok(Some(-1_200)));
        assert!(parse_amount("12.345", false).is_err());
        assert!(parse_amount("12a", false).is_err());
        assert!(parse_amount("99999999999999999999", false).is_err());
        assert_eq!(parse_milli("12.5"), Ok(Some(12_500)));
        assert_eq!(parse_int("1,200"), Ok(Some(1200)));
        assert_eq!(parse_flag("是"), Ok(Some(true)));
        assert!(parse_flag("maybe").is_err());
    }

    #[test]
    fn phones() {
        assert_eq!(
            normalize_phone("+86 138-3700-1234").as_deref(),
            Some("13837001234")
        );
        assert_eq!(
            normalize_phone("0086 13837001234").as_deref(),
            Some("13837001234")
        );
        assert_eq!(
            normalize_phone("8613837001234").as_deref(),
            Some("13837001234")
        );
        assert_eq!(
            normalize_phone("138 3700 1234").as_deref(),
            Some("13837001234")
        );
        assert_eq!(
            normalize_phone("0370-3221234").as_deref(),
            Some("03703221234")
        );
        assert_eq!(
            normalize_phone("(0370)3221234").as_deref(),
            Some("03703221234")
        );
        assert_eq!(normalize_phone("3221234").as_deref(), Some("03703221234"));
        assert_eq!(
            normalize_phone("１３８３７００１２３４").as_deref(),
            Some("13837001234")
        );
        assert_eq!(normalize_phone("12345"), None);
        assert_eq!(normalize_phone(""), None);
    }

    #[test]
    fn chinese_numerals() {
        assert_eq!(chinese_number("五"), Some(5));
        assert_eq!(chinese_number("十二"), Some(12));
        assert_eq!(chinese_number("二十三"), Some(23));
        assert_eq!(chinese_number("一百零二"), Some(102));
        assert_eq!(chinese_number("301"), Some(301));
        assert_eq!(chinese_number("x"), None);
    }

    #[test]
    fn addresses_split_into_components() {
        let a = parse_address("河南省商丘市梁园区凯旋路123号建业森林半岛5号楼2单元301室");
        assert_eq!(a.province, "河南省");
        assert_eq!(a.city, "商丘市");
        assert_eq!(a.district, "梁园区");
        assert_eq!(a.region, Some(411402));
        assert_eq!(a.road, "凯旋路");
        assert_eq!(a.number, "123");
        assert_eq!(a.estate, "建业森林半岛");
        assert_eq!(
            (a.building.as_str(), a.unit.as_str(), a.room.as_str()),
            ("5", "2", "301")
        );
        assert_eq!(a.rest, "");

        // The same place written differently normalizes to the same components.
        for variant in [
            "商丘市梁园区凯旋路123号建业森林半岛5栋2单元301",
            "梁园区凯旋路１２３号建业森林半岛五号楼二单元301室",
            "商丘梁园區凱旋路123號建業森林半島5-2-301",
            "河南商丘梁园凯旋路123号建业森林半岛5幢2单元301室",
        ] {
            let b = parse_address(variant);
            assert_eq!(b.region, Some(411402), "{variant}");
            assert_eq!(
                (b.road.as_str(), b.number.as_str(), b.estate.as_str()),
                ("凯旋路", "123", "建业森林半岛"),
                "{variant}"
            );
            assert_eq!(
                (b.building.as_str(), b.unit.as_str(), b.room.as_str()),
                ("5", "2", "301"),
                "{variant}"
            );
        }
    }

    #[test]
    fn rural_addresses() {
        let a = parse_address("河南省商丘市虞城县利民镇王庄村3组12号");
        assert_eq!(a.region, Some(411425));
        assert_eq!(a.town, "利民镇");
        assert_eq!(a.village, "王庄村3组");
        assert_eq!(a.number, "12");
        assert_eq!(a.canonical(), "河南省商丘市虞城县利民镇王庄村3组12号");
        // A regression: the group used to be read as a building and "组" left over
        // ("王庄村3号楼12室组").
        assert_eq!(parse_address("利民镇王庄村三组12号").village, "王庄村3组");
        let b = parse_address("永城市芒山镇李寨村");
        assert_eq!(b.district, "永城市");
        assert_eq!(b.village, "李寨村");
    }

    #[test]
    fn foreign_addresses_keep_their_text() {
        let a = parse_address("12 Miller Street, Fitzroy");
        assert_eq!(a.region, None);
        assert!(a.canonical().contains("Miller"));
    }
}
