//! Source configs: the TOML file beside each department export that says what the file is and
//! what every column means. The format is documented, with an example, in `datasets/README.md`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::SourceError;

/// What a table's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// Rows say who someone is (a 户籍 entry, an account holder, a registration): resolved into
    /// entities.
    Identity,
    /// Rows say what happened (a bill, a contribution): attributed through a local key.
    Event,
    /// Rows describe a relation or a reference list (a marriage, a blacklist entry).
    Reference,
}

/// What kind of entity a table's rows are about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    Person,
    Enterprise,
    Household,
    /// Either a person or an enterprise (a utility account, a property owner).
    Party,
    /// Something else keyed locally (a property unit, a case, a project).
    #[default]
    Other,
}

/// Which of a party table's two kinds a record is about, as a category of the table says
/// (`居民` on an electricity account: a resident, so a person).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartyKind {
    Person,
    Enterprise,
}

/// The role of one column: how it is parsed, normalized and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The row's identifier within its source.
    RecordId,
    /// The subject's resident id number (GB 11643).
    PersonId,
    /// The subject's USCC (GB 32100) or legacy registration number.
    EnterpriseId,
    /// The subject's id number or USCC, whichever it is.
    PartyId,
    /// Another person's id number (spouse, mother, employee).
    PersonRef,
    /// Another enterprise's USCC (employer, lessee).
    EnterpriseRef,
    /// Another party's id number or USCC.
    PartyRef,
    /// A person's full name.
    Name,
    Surname,
    GivenName,
    /// An enterprise's or organisation's name.
    OrgName,
    Gender,
    BirthDate,
    Phone,
    /// A full address, split into components.
    Address,
    /// One line of a Western-style address (street, number).
    AddressLine,
    /// Suburb, town or locality.
    Locality,
    Postcode,
    /// An administrative division code (6 or 12 digits).
    Region,
    /// A department-local key (account number, household number, case id).
    Key,
    Date,
    Month,
    /// Money, stored in fen.
    Amount,
    /// A decimal quantity (kWh, m³, m²), stored in thousandths.
    Quantity,
    Integer,
    Flag,
    /// A value from a small set (status, type).
    Category,
    Text,
    /// Read and counted, not stored.
    Ignore,
}

impl TableKind {
    /// The name used in configs and snapshots (`identity`, `event`, `reference`).
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Identity => "identity",
            TableKind::Event => "event",
            TableKind::Reference => "reference",
        }
    }
}

impl Subject {
    /// The name used in configs and snapshots (`person`, `party`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Person => "person",
            Subject::Enterprise => "enterprise",
            Subject::Household => "household",
            Subject::Party => "party",
            Subject::Other => "other",
        }
    }
}

impl Role {
    /// The name used in configs (`person_id`, `birth_date`, …).
    pub fn name(self) -> String {
        toml::Value::try_from(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Whether values of this role are identifiers validated as id numbers or USCCs.
    pub fn is_identifier(self) -> bool {
        matches!(
            self,
            Role::PersonId
                | Role::EnterpriseId
                | Role::PartyId
                | Role::PersonRef
                | Role::EnterpriseRef
                | Role::PartyRef
        )
    }
}

/// One column of a source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    /// The header of the column in the CSV file.
    pub name: String,
    pub role: Role,
    /// An empty value quarantines the row.
    #[serde(default, skip_serializing_if = "is_false")]
    pub required: bool,
    /// Amounts only: negative values are legitimate (refunds, corrections).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_negative: bool,
    /// Categories only: the allowed values (after normalization). Anything else quarantines
    /// the row. Empty means any value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Keys and references: the source and column this value points to, as
    /// `"DEPT.table.column"` (documentation for resolution; not checked at ingest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    /// What the column holds, for people reading the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
    /// Categories of a party table only: the values that say whether the record is a
    /// person's or an enterprise's (`party_kind = { "居民" = "person", "一般工商业" =
    /// "enterprise" }`). Resolution then places the record only with entities of that kind;
    /// other values, and a valid id number or USCC, decide as before.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub party_kind: std::collections::BTreeMap<String, PartyKind>,
}

/// CSV dialect.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvDialect {
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    #[serde(default = "default_true")]
    pub header: bool,
}

impl Default for CsvDialect {
    fn default() -> Self {
        CsvDialect {
            delimiter: ',',
            header: true,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_delimiter() -> char {
    ','
}
fn default_true() -> bool {
    true
}

/// A source config: one CSV file and what it means.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Department code (`GA`, `MZ`, … or any short name for external data).
    pub department: String,
    /// Table name within the department.
    pub table: String,
    pub kind: TableKind,
    pub subject: Subject,
    /// The CSV file, relative to the config's folder. Defaults to `<table>.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The date the export reflects (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub csv: CsvDialect,
    #[serde(rename = "column")]
    pub columns: Vec<ColumnConfig>,
}

impl SourceConfig {
    /// `DEPT.table`: the source's name in summaries, links and quarantine files.
    pub fn source_name(&self) -> String {
        format!("{}.{}", self.department, self.table)
    }

    /// Parses and checks a config.
    pub fn from_toml(text: &str, path: &Path) -> Result<SourceConfig, SourceError> {
        let config: SourceConfig = toml::from_str(text).map_err(|e| SourceError::Config {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// Reads a config file.
    pub fn load(path: &Path) -> Result<SourceConfig, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|e| SourceError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        SourceConfig::from_toml(&text, path)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    fn check(&self, path: &Path) -> Result<(), SourceError> {
        let fail = |msg: String| {
            Err(SourceError::Config {
                path: path.to_path_buf(),
                msg,
            })
        };
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !valid_name(&self.department) || !valid_name(&self.table) {
            return fail(format!(
                "department {:?} and table {:?} must be non-empty ASCII letters, digits, '_' or '-'",
                self.department, self.table
            ));
        }
        if self.columns.is_empty() {
            return fail("a source needs at least one [[column]]".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.columns {
            if !seen.insert(c.name.as_str()) {
                return fail(format!("column {:?} is declared twice", c.name));
            }
            if c.name.contains('.') {
                return fail(format!("column name {:?} must not contain '.'", c.name));
            }
            if !c.party_kind.is_empty()
                && (c.role != Role::Category || self.subject != Subject::Party)
            {
                return fail(format!(
                    "column {:?}: party_kind is for category columns of a party table",
                    c.name
                ));
            }
        }
        for role in [
            Role::RecordId,
            Role::PersonId,
            Role::EnterpriseId,
            Role::PartyId,
            Role::BirthDate,
            Role::Gender,
        ] {
            if self.columns.iter().filter(|c| c.role == role).count() > 1 {
                return fail(format!("at most one column may have role {role:?}"));
            }
        }
        if !self.csv.delimiter.is_ascii() {
            return fail("the CSV delimiter must be an ASCII character".into());
        }
        if let Some(as_of) = &self.as_of
            && !matches!(crate::ingest::normalize::parse_date(as_of), Ok(Some(_)))
        {
            return fail(format!("as_of {as_of:?} is not a date (YYYY-MM-DD)"));
        }
        Ok(())
    }
}

/// A config found on disk with the CSV file it describes.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub config: SourceConfig,
    pub config_path: PathBuf,
    pub csv_path: PathBuf,
}

/// Finds every `*.toml` source config under `dir` (recursively, skipping `truth/` folders), in
/// a stable order. Configs
/// that fail to parse are returned as errors beside the good ones, so one broken config does
/// not hide the rest.
pub fn discover(dir: &Path) -> Result<Vec<Result<SourceFile, SourceError>>, SourceError> {
    let mut paths = Vec::new();
    walk(dir, &mut paths)?;
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let config = SourceConfig::load(&p)?;
            let file = config
                .file
                .clone()
                .unwrap_or_else(|| format!("{}.csv", config.table));
            let csv_path = p.parent().unwrap_or(Path::new(".")).join(file);
            Ok(SourceFile {
                config,
                config_path: p,
                csv_path,
            })
        })
        .collect())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let io = |e| SourceError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            // Ground truth lives beside the data for evaluation only: never ingested.
            if path.file_name().is_some_and(|n| n == "truth") {
                continue;
            }
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
department = "GA"
table = "person"
kind = "identity"
subject = "person"
as_of = "2025-12-31"

[[column]]
name = "rid"
role = "record_id"

[[column]]
name = "pid"
role = "person_id"

[[column]]
name = "status"
role = "category"
values = ["正常", "迁出"]
"#;

    #[test]
    fn parses_and_round_trips() {
        let c = SourceConfig::from_toml(EXAMPLE, Path::new("x.toml")).unwrap();
        assert_eq!(c.source_name(), "GA.person");
        assert_eq!(c.columns[1].role, Role::PersonId);
        let again = SourceConfig::from_toml(&c.to_toml(), Path::new("y.toml")).unwrap();
        assert_eq!(again.columns.len(), 3);
    }

    #[test]
    fn rejects_bad_configs_with_a_reason() {
        let dup = EXAMPLE.replace("name = \"status\"", "name = \"pid\"");
        let e = SourceConfig::from_toml(&dup, Path::new("dup.toml")).unwrap_err();
        assert!(e.to_string().contains("declared twice"), "{e}");
        let unknown_role = EXAMPLE.replace("role = \"category\"", "role = \"colour\"");
        let e = SourceConfig::from_toml(&unknown_role, Path::new("r.toml")).unwrap_err();
        assert!(e.to_string().contains("r.toml"), "{e}");
        let bad_date = EXAMPLE.replace("2025-12-31", "2025-13-31");
        assert!(SourceConfig::from_toml(&bad_date, Path::new("d.toml")).is_err());
        // A party kind is a category's, in a party table.
        let kind = "party_kind = { \"正常\" = \"person\" }";
        let on = |role: &str, subject: &str| {
            EXAMPLE
                .replace("subject = \"person\"", &format!("subject = \"{subject}\""))
                .replace("role = \"category\"", &format!("role = \"{role}\"\n{kind}"))
        };
        let c = SourceConfig::from_toml(&on("category", "party"), Path::new("k.toml")).unwrap();
        assert_eq!(c.columns[2].party_kind["正常"], PartyKind::Person);
        let again = SourceConfig::from_toml(&c.to_toml(), Path::new("k2.toml")).unwrap();
        assert_eq!(again.columns[2].party_kind, c.columns[2].party_kind);
        for (role, subject) in [("category", "person"), ("key", "party")] {
            let e = SourceConfig::from_toml(&on(role, subject), Path::new("k.toml")).unwrap_err();
            assert!(e.to_string().contains("party_kind"), "{e}");
        }
        let e = SourceConfig::from_toml(
            &on("category", "party").replace("\"person\" }", "\"household\" }"),
            Path::new("k.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("k.toml"), "{e}");
    }
}
