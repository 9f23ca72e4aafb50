//! The table registry: every department feed the generator writes, with its source config
//! (department, table, kind, subject, column roles) and the function that emits its rows.

use super::model::City;
use super::out::{DateStyle, Out};
use super::rng::Rng;
use crate::date::Date;
use std::collections::BTreeMap;

use crate::source::config::{
    ColumnConfig, CsvDialect, PartyKind, Role, SourceConfig, Subject, TableKind,
};

/// What a table's rows are generated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Person,
    Household,
    Enterprise,
    /// Persons, then enterprises (unit `u` ≥ persons is enterprise `u - persons`).
    Party,
}

/// One column: header, role, and what it holds.
#[derive(Debug, Clone, Copy)]
pub struct Col(pub &'static str, pub Role, pub &'static str);

/// One generated table.
#[derive(Debug)]
pub struct TableDef {
    pub dept: &'static str,
    pub table: &'static str,
    /// `DEPT.table`.
    pub source: &'static str,
    pub kind: TableKind,
    pub subject: Subject,
    pub unit: Unit,
    pub style: DateStyle,
    pub description: &'static str,
    pub columns: &'static [Col],
    pub emit: fn(&mut Out, u32),
}

impl TableDef {
    /// The source config that describes this table's CSV.
    pub fn config(&self, as_of: Date) -> SourceConfig {
        SourceConfig {
            department: self.dept.to_string(),
            table: self.table.to_string(),
            kind: self.kind,
            subject: self.subject,
            file: Some(format!("{}.csv", self.table)),
            as_of: Some(as_of.to_string()),
            description: Some(self.description.to_string()),
            csv: CsvDialect::default(),
            columns: self
                .columns
                .iter()
                .map(|c| ColumnConfig {
                    name: c.0.to_string(),
                    role: c.1,
                    required: matches!(c.1, Role::RecordId),
                    allow_negative: false,
                    values: Vec::new(),
                    of: None,
                    doc: (!c.2.is_empty()).then(|| c.2.to_string()),
                    party_kind: party_kinds(self.source, c.0),
                })
                .collect(),
        }
    }

    pub fn header(&self) -> String {
        let mut h: Vec<&str> = self.columns.iter().map(|c| c.0).collect();
        h.dedup();
        h.join(",")
    }

    /// Number of units this table iterates over.
    pub fn units(&self, city: &City) -> u64 {
        match self.unit {
            Unit::Person => city.persons.len() as u64,
            Unit::Household => city.households.len() as u64,
            Unit::Enterprise => city.enterprises.len() as u64,
            Unit::Party => (city.persons.len() + city.enterprises.len()) as u64,
        }
    }

    /// Whether rows of this table carry ground truth.
    pub fn has_truth(&self) -> bool {
        self.kind == TableKind::Identity
    }
}

/// The categories that say whether a party table's record is a person's or an enterprise's:
/// the utilities' tariffs (a residential tariff is a household's; a commercial or industrial
/// one is a business's). Values that do not decide are left out: an agricultural tariff may be
/// a farmer's or a cooperative's, and a property's use (BDC) says nothing of its owner.
/// (source, column, values and their kinds).
type PartyKinds = (
    &'static str,
    &'static str,
    &'static [(&'static str, PartyKind)],
);

const PARTY_KINDS: &[PartyKinds] = &[
    (
        "DL.account",
        "customer_type",
        &[
            ("居民", PartyKind::Person),
            ("一般工商业", PartyKind::Enterprise),
            ("大工业", PartyKind::Enterprise),
        ],
    ),
    (
        "SS.account",
        "type",
        &[
            ("居民", PartyKind::Person),
            ("非居民", PartyKind::Enterprise),
        ],
    ),
    (
        "RQ.account",
        "type",
        &[("居民", PartyKind::Person), ("商业", PartyKind::Enterprise)],
    ),
];

/// The party kinds column `column` of `source` declares (none for most).
fn party_kinds(source: &str, column: &str) -> BTreeMap<String, PartyKind> {
    PARTY_KINDS
        .iter()
        .filter(|(s, c, _)| *s == source && *c == column)
        .flat_map(|(_, _, values)| values.iter())
        .map(|(v, k)| (v.to_string(), *k))
        .collect()
}

/// Every table, in the order files are written and streamed.
pub fn all_tables() -> Vec<&'static TableDef> {
    super::feeds::people::TABLES
        .iter()
        .chain(super::feeds::work::TABLES)
        .chain(super::feeds::business::TABLES)
        .chain(super::feeds::utility::TABLES)
        .collect()
}

/// A per-entity random stream for facts that several tables must agree on (hire date, wage).
pub fn entity_rng(city: &City, purpose: &str, index: u32) -> Rng {
    Rng::new(
        city.params.seed,
        super::rng::label(purpose),
        u64::from(index),
    )
}
