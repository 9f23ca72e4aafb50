//! The server's configuration file (TOML): where to listen, where the workflow store and audit
//! log live, limits, and the bearer tokens with their roles and departments.
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! data = "work/server"
//! max_message_bytes = 16777216
//! concurrency_per_connection = 256
//! request_timeout_seconds = 60
//! heavy_requests = 4
//! watch_seconds = 0
//!
//! [[tokens]]
//! name = "minzheng-system"
//! token = "change-me"
//! role = "service"        # service, analyst, hotline, supervisor, admin
//! department = "MZ"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::auth::Role;

/// One bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it: written to the audit log and the ledger.
    pub name: String,
    pub token: String,
    pub role: Role,
    /// The department code (MZ, RS, WL, …); a service sees only the policies it leads.
    #[serde(default)]
    pub department: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: Option<String>,
    /// Folder of the workflow store (`ledger.redb`) and the audit log (`audit.log`).
    pub data: Option<PathBuf>,
    /// Largest request or reply message.
    pub max_message_bytes: usize,
    pub concurrency_per_connection: usize,
    /// Longest any request may run (a client's shorter deadline wins).
    pub request_timeout_seconds: u64,
    /// What-ifs and reloads evaluated at once; more wait their turn.
    pub heavy_requests: usize,
    /// Poll the snapshot folder for a new generation this often (0: only on Admin.Reload or
    /// SIGHUP).
    pub watch_seconds: u64,
    pub tokens: Vec<TokenConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: None,
            data: None,
            max_message_bytes: 16 << 20,
            concurrency_per_connection: 256,
            request_timeout_seconds: 60,
            heavy_requests: 4,
            watch_seconds: 0,
            tokens: Vec::new(),
        }
    }
}

/// The demo's configuration: one token per role, for the built-in demo city only.
pub const DEMO_CONFIG: &str = include_str!("../../datasets/server/demo.toml");

impl ServerConfig {
    pub fn parse(text: &str, origin: &str) -> Result<ServerConfig, String> {
        let c: ServerConfig = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        if c.tokens.is_empty() {
            return Err(format!(
                "{origin}: no [[tokens]]: nobody could call the server"
            ));
        }
        for t in &c.tokens {
            if t.token.len() < 16 {
                return Err(format!(
                    "{origin}: the token of {} is shorter than 16 characters",
                    t.name
                ));
            }
            if t.role == Role::Service && t.department.is_empty() {
                return Err(format!(
                    "{origin}: {} is a service token without a department",
                    t.name
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(t) = c.tokens.iter().find(|t| !seen.insert(&t.token)) {
            return Err(format!("{origin}: the token of {} is used twice", t.name));
        }
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<ServerConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        ServerConfig::parse(&text, &path.display().to_string())
    }

    pub fn demo() -> ServerConfig {
        // The embedded file is checked by a unit test; an error here is a build defect.
        ServerConfig::parse(DEMO_CONFIG, "demo.toml").unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_parses_and_bad_ones_say_why() {
        let c = ServerConfig::parse(DEMO_CONFIG, "demo.toml").unwrap();
        assert!(c.tokens.iter().any(|t| t.role == Role::Admin));
        let e = ServerConfig::parse("", "x.toml").unwrap_err();
        assert!(e.contains("no [[tokens]]"), "{e}");
        let short = "[[tokens]]\nname = \"a\"\ntoken = \"short\"\nrole = \"admin\"\n";
        assert!(
            ServerConfig::parse(short, "x")
                .unwrap_err()
                .contains("shorter")
        );
        let bad_role = "[[tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nrole = \"king\"\n";
        assert!(ServerConfig::parse(bad_role, "x").is_err());
    }
}
