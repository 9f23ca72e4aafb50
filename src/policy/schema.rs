//! What policies may refer to: every table's columns with their types, from a snapshot or from
//! source configs (so that `policies check` works before any data is built).

use std::collections::BTreeMap;

use crate::ingest::fields::stored_columns;
use crate::snapshot::Snapshot;
use crate::snapshot::build::kept;
use crate::source::config::{Role, SourceConfig};

/// The type of a value in a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    Num,
    Str,
    Bool,
    Date,
    Month,
    /// `3 years`: only in date arithmetic and windows.
    Offset,
}

impl Ty {
    pub fn as_str(self) -> &'static str {
        match self {
            Ty::Num => "a number",
            Ty::Str => "a string",
            Ty::Bool => "true/false",
            Ty::Date => "a date",
            Ty::Month => "a month",
            Ty::Offset => "a duration",
        }
    }
}

/// How a stored integer becomes a policy value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// As stored.
    One,
    /// Fen → yuan.
    Money,
    /// Thousandths → units.
    Milli,
}

#[derive(Debug, Clone)]
pub struct ColSchema {
    pub ty: Ty,
    pub scale: Scale,
    /// Whether values name entities (the column can carry a relation).
    pub reference: bool,
}

#[derive(Debug, Clone)]
pub struct TableSchema {
    /// `identity`, `event` or `reference`.
    pub kind: String,
    /// `person`, `household`, `enterprise`, `party` or `other`.
    pub subject: String,
    pub columns: BTreeMap<String, ColSchema>,
}

impl TableSchema {
    /// Whether an entity has at most one row here as a rule, so that a bare field is its value.
    pub fn per_entity(&self) -> bool {
        self.kind != "event"
    }

    /// Whether rows of this table can belong to entities of `kind`.
    pub fn serves(&self, kind: &str) -> bool {
        self.subject == kind || self.subject == "party" || self.subject == "other"
    }
}

/// Every table and column policies may name.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub tables: BTreeMap<String, TableSchema>,
}

/// The policy type of a column with `role` stored as `ty` (`int`, `dict`, `bytes`).
pub fn column_type(role: &str, ty: &str) -> (Ty, Scale) {
    match (role, ty) {
        ("date" | "birth_date", "int") => (Ty::Date, Scale::One),
        ("month", "int") => (Ty::Month, Scale::One),
        ("flag", "int") => (Ty::Bool, Scale::One),
        ("amount", "int") => (Ty::Num, Scale::Money),
        ("quantity", "int") => (Ty::Num, Scale::Milli),
        (_, "int") => (Ty::Num, Scale::One),
        _ => (Ty::Str, Scale::One),
    }
}

impl Schema {
    /// The schema of a built snapshot.
    pub fn of_snapshot(s: &Snapshot) -> Schema {
        let mut tables = BTreeMap::new();
        for t in s.tables() {
            let columns = t
                .columns
                .iter()
                .map(|c| {
                    let (ty, scale) = column_type(&c.role, &c.ty);
                    (
                        c.name.clone(),
                        ColSchema {
                            ty,
                            scale,
                            reference: c.reference,
                        },
                    )
                })
                .collect();
            tables.insert(
                t.name.clone(),
                TableSchema {
                    kind: t.kind.clone(),
                    subject: t.subject.clone(),
                    columns,
                },
            );
        }
        Schema { tables }
    }

    /// The schema that ingesting these sources would give (normalized columns and address
    /// regions; references assumed wherever the role may name an entity).
    pub fn of_configs<'a>(configs: impl IntoIterator<Item = &'a SourceConfig>) -> Schema {
        let mut tables = BTreeMap::new();
        for c in configs {
            let mut columns = BTreeMap::new();
            for col in &c.columns {
                let role = col.role.name();
                let reference = matches!(
                    col.role,
                    Role::PersonRef | Role::EnterpriseRef | Role::PartyRef | Role::Key
                );
                // The columns ingest writes for this role that a snapshot keeps.
                for (suffix, stored) in stored_columns(col.role) {
                    let name = if suffix.is_empty() {
                        col.name.clone()
                    } else {
                        format!("{}.{suffix}", col.name)
                    };
                    if !kept(&name) {
                        continue;
                    }
                    let (ty, scale) = column_type(&role, stored.as_str());
                    columns.insert(
                        name,
                        ColSchema {
                            ty,
                            scale,
                            reference: reference && suffix.is_empty(),
                        },
                    );
                }
            }
            tables.insert(
                c.source_name(),
                TableSchema {
                    kind: c.kind.as_str().into(),
                    subject: c.subject.as_str().into(),
                    columns,
                },
            );
        }
        Schema { tables }
    }

    /// The schema of the synthetic city's sources.
    pub fn of_city() -> Schema {
        let as_of = crate::date::Date::from_ymd(2025, 12, 31).unwrap_or(crate::date::Date(0));
        let configs: Vec<SourceConfig> = crate::source::city::tables::all_tables()
            .into_iter()
            .map(|t| t.config(as_of))
            .collect();
        Schema::of_configs(&configs)
    }

    pub fn column(&self, table: &str, column: &str) -> Option<&ColSchema> {
        self.tables.get(table)?.columns.get(column)
    }
}
