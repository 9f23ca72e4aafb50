//! Generator parameters: size, seed, reference date, history, and the documented rates at
//! which the data is made dirty.

use serde::{Deserialize, Serialize};

use crate::date::{Date, Month};
use crate::error::GenerateError;

/// Rates of each kind of dirt, per record of the feeds where the kind applies. The defaults
/// are documented in `datasets/README.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirtRates {
    /// One digit of an id number substituted (breaks the check character).
    pub id_typo: f64,
    /// Two adjacent digits of an id number transposed.
    pub id_transpose: f64,
    /// Legacy 15-digit id numbers, for people born in the 1900s, in the older feeds.
    pub id_legacy15: f64,
    /// A name character replaced by a homophone (张伟 → 章伟).
    pub name_homophone: f64,
    /// A name written in traditional characters (陈国华 → 陳國華).
    pub name_traditional: f64,
    /// A name with stray or full-width spaces.
    pub name_spacing: f64,
    /// A date written in another of the accepted formats than the feed's own.
    pub date_format: f64,
    /// A phone written with +86, dashes or spaces.
    pub phone_format: f64,
    /// An old phone number instead of the current one.
    pub phone_stale: f64,
    /// An address written in a variant form (short names, Chinese numerals, dash form).
    pub address_variant: f64,
    /// A stale address (the person's previous home).
    pub address_stale: f64,
    /// An identity row repeated exactly.
    pub duplicate_row: f64,
    /// A malformed row: wrong column count, invalid UTF-8, impossible date, negative amount.
    pub malformed_row: f64,
}

impl Default for DirtRates {
    fn default() -> Self {
        DirtRates {
            id_typo: 0.004,
            id_transpose: 0.002,
            id_legacy15: 0.03,
            name_homophone: 0.01,
            name_traditional: 0.008,
            name_spacing: 0.005,
            date_format: 0.15,
            phone_format: 0.25,
            phone_stale: 0.05,
            address_variant: 0.35,
            address_stale: 0.04,
            duplicate_row: 0.002,
            malformed_row: 0.0005,
        }
    }
}

impl DirtRates {
    /// No dirt at all: every value as the truth has it.
    pub fn clean() -> DirtRates {
        DirtRates {
            id_typo: 0.0,
            id_transpose: 0.0,
            id_legacy15: 0.0,
            name_homophone: 0.0,
            name_traditional: 0.0,
            name_spacing: 0.0,
            date_format: 0.0,
            phone_format: 0.0,
            phone_stale: 0.0,
            address_variant: 0.0,
            address_stale: 0.0,
            duplicate_row: 0.0,
            malformed_row: 0.0,
        }
    }

    fn check(&self) -> Result<(), GenerateError> {
        for (name, v) in [
            ("id_typo", self.id_typo),
            ("id_transpose", self.id_transpose),
            ("id_legacy15", self.id_legacy15),
            ("name_homophone", self.name_homophone),
            ("name_traditional", self.name_traditional),
            ("name_spacing", self.name_spacing),
            ("date_format", self.date_format),
            ("phone_format", self.phone_format),
            ("phone_stale", self.phone_stale),
            ("address_variant", self.address_variant),
            ("address_stale", self.address_stale),
            ("duplicate_row", self.duplicate_row),
            ("malformed_row", self.malformed_row),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(GenerateError::Params(format!(
                    "dirt rate {name} = {v} is not in [0, 1]"
                )));
            }
        }
        Ok(())
    }
}

/// Everything that determines a city. Same parameters → byte-identical output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CityParams {
    pub persons: u64,
    pub seed: u64,
    /// The reference date: ages, statuses and the end of the event history.
    pub as_of: Date,
    /// Months of event history ending with `as_of`'s month.
    pub history_months: u32,
    /// Market entities per person (the reference city: ~800k for 7.8M).
    pub enterprises_per_person: f64,
    pub dirt: DirtRates,
}

impl CityParams {
    pub fn new(persons: u64, seed: u64) -> CityParams {
        CityParams {
            persons,
            seed,
            as_of: Date::from_ymd(2025, 12, 31).unwrap_or(Date(20_453)),
            history_months: 60,
            enterprises_per_person: 800_000.0 / 7_800_000.0,
            dirt: DirtRates::default(),
        }
    }

    pub fn check(&self) -> Result<(), GenerateError> {
        if self.persons == 0 || self.persons > 200_000_000 {
            return Err(GenerateError::Params(format!(
                "persons = {} must be between 1 and 200,000,000",
                self.persons
            )));
        }
        if !(12..=240).contains(&self.history_months) {
            return Err(GenerateError::Params(format!(
                "history_months = {} must be between 12 and 240",
                self.history_months
            )));
        }
        if !(0.0..=1.0).contains(&self.enterprises_per_person) {
            return Err(GenerateError::Params(
                "enterprises_per_person must be in [0, 1]".into(),
            ));
        }
        self.dirt.check()
    }

    pub fn enterprise_count(&self) -> u64 {
        ((self.persons as f64 * self.enterprises_per_person).round() as u64).max(1)
    }

    /// The months of event history, oldest first.
    pub fn months(&self) -> impl Iterator<Item = Month> + Clone {
        let last = self.as_of.month().0;
        let first = last - self.history_months as i32 + 1;
        (first..=last).map(Month)
    }

    /// The last complete year before `as_of` (the policies' Y-1 when as-of is in year Y).
    pub fn last_year(&self) -> i32 {
        let (y, m, d) = self.as_of.ymd();
        if (m, d) == (12, 31) { y } else { y - 1 }
    }
}
