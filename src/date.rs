//! Calendar dates and months as plain integers.
//!
//! A [`Date`] is the number of days since 1970-01-01 in the proleptic Gregorian calendar, so it
//! sorts, subtracts and packs into columns as an `i32`. A [`Month`] is `year * 12 + (month - 1)`.
//! Conversions follow Howard Hinnant's `days_from_civil` / `civil_from_days`, exact for every
//! date the data can hold.

use std::fmt;

/// Days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i32);

/// Months since year 0: `year * 12 + (month - 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month(pub i32);

/// Earliest and latest years a date in department data may carry; anything outside is an
/// impossible date, not a very old person.
pub const MIN_YEAR: i32 = 1850;
pub const MAX_YEAR: i32 = 2100;

/// Whether `year` is a Gregorian leap year.
pub fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` (1-12) of `year`.
pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// The date `year-month-day`, or `None` when no such day exists or the year is outside
    /// [`MIN_YEAR`]..=[`MAX_YEAR`].
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return None;
        }
        Date::from_ymd_any(year, month, day)
    }

    /// The date `year-month-day` in any year (date arithmetic may leave the range data can
    /// hold: a birth date plus 95 years), or `None` when no such day exists.
    pub fn from_ymd_any(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(-1_000_000..=1_000_000).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        if day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month as i32 + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day as i32 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some(Date(era * 146_097 + doe - 719_468))
    }

    /// `(year, month, day)` of this date.
    pub fn ymd(self) -> (i32, u32, u32) {
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i32::from(month <= 2);
        (year, month, day)
    }

    pub fn year(self) -> i32 {
        self.ymd().0
    }

    pub fn month(self) -> Month {
        let (y, m, _) = self.ymd();
        Month(y * 12 + m as i32 - 1)
    }

    /// Whole years of age on `as_of` for someone born on `self`: the birthday itself counts
    /// (年满 N 周岁 is reached on the day of the N-th birthday; a 29 February birthday is reached
    /// on 1 March in common years).
    pub fn age_on(self, as_of: Date) -> i32 {
        let (by, bm, bd) = self.ymd();
        let (ay, am, ad) = as_of.ymd();
        let mut age = ay - by;
        if (am, ad) < (bm, bd) {
            age -= 1;
        }
        age
    }

    /// The date `years` years later on the same month and day (29 February → 1 March when the
    /// target year is common).
    pub fn add_years(self, years: i32) -> Option<Date> {
        let (y, m, d) = self.ymd();
        let ty = y + years;
        Date::from_ymd(ty, m, d).or_else(|| Date::from_ymd(ty, 3, 1))
    }

    /// The 8-digit form `YYYYMMDD` used inside id numbers.
    pub fn yyyymmdd(self) -> u32 {
        let (y, m, d) = self.ymd();
        y as u32 * 10_000 + m * 100 + d
    }

    /// Parses an 8-digit `YYYYMMDD`.
    pub fn from_yyyymmdd(digits: &[u8]) -> Option<Date> {
        if digits.len() != 8 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = |r: std::ops::Range<usize>| {
            digits[r]
                .iter()
                .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'))
        };
        Date::from_ymd(n(0..4) as i32, n(4..6), n(6..8))
    }
}

impl serde::Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        let b = s.as_bytes();
        let parsed = (b.len() == 10 && b[4] == b'-' && b[7] == b'-')
            .then(|| {
                let digits: Vec<u8> = b.iter().copied().filter(|c| *c != b'-').collect();
                Date::from_yyyymmdd(&digits)
            })
            .flatten();
        parsed.ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a date YYYY-MM-DD")))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Month {
    pub fn from_ym(year: i32, month: u32) -> Option<Month> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) || !(1..=12).contains(&month) {
            return None;
        }
        Some(Month(year * 12 + month as i32 - 1))
    }

    pub fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    /// Month of the year, 1-12.
    pub fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    pub fn first_day(self) -> Date {
        // A Month is only ever built from a valid year and month.
        Date::from_ymd(self.year(), self.month(), 1).unwrap_or(Date(0))
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_round_trip() {
        assert_eq!(Date::from_ymd(1970, 1, 1), Some(Date(0)));
        assert_eq!(
            Date::from_ymd(2000, 3, 1).map(|d| d.ymd()),
            Some((2000, 3, 1))
        );
        for days in (-40_000..47_000).step_by(7) {
            let (y, m, d) = Date(days).ymd();
            assert_eq!(Date::from_ymd(y, m, d), Some(Date(days)));
        }
    }

    #[test]
    fn impossible_dates_are_refused() {
        assert_eq!(Date::from_ymd(2023, 2, 29), None);
        assert!(Date::from_ymd(2024, 2, 29).is_some());
        assert_eq!(Date::from_ymd(1900, 2, 29), None);
        assert_eq!(Date::from_ymd(1985, 13, 1), None);
        assert_eq!(Date::from_ymd(1985, 4, 31), None);
        assert_eq!(Date::from_ymd(1700, 1, 1), None);
    }

    #[test]
    fn age_counts_the_birthday_itself() {
        let born = Date::from_ymd(1945, 6, 15).unwrap();
        assert_eq!(born.age_on(Date::from_ymd(2025, 6, 14).unwrap()), 79);
        assert_eq!(born.age_on(Date::from_ymd(2025, 6, 15).unwrap()), 80);
        let leap = Date::from_ymd(1944, 2, 29).unwrap();
        assert_eq!(leap.age_on(Date::from_ymd(2024, 2, 28).unwrap()), 79);
        assert_eq!(leap.age_on(Date::from_ymd(2024, 2, 29).unwrap()), 80);
        assert_eq!(leap.add_years(81), Date::from_ymd(2025, 3, 1));
    }

    #[test]
    fn months() {
        let m = Month::from_ym(2023, 1).unwrap();
        assert_eq!((m.year(), m.month()), (2023, 1));
        assert_eq!(Month(m.0 + 13).to_string(), "2024-02");
        assert_eq!(
            Date::from_ymd(2024, 2, 29).unwrap().month(),
            Month(m.0 + 13)
        );
    }
}
