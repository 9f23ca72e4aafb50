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
//! serving_threads = 0     # one per core
//!
//! [[tokens]]
//! name = "minzheng-system"
//! token = "change-me"
//! role = "service"        # service, analyst, hotline, supervisor, admin
//! department = "MZ"
//!
//! [tls]                   # optional: TLS on the port; with client_ca, mTLS
//! cert = "server.pem"     # PEM, paths relative to this file
//! key = "server.key"
//! client_ca = "ca.pem"    # clients must show a certificate this CA signed
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

/// TLS on the listening port: the server's certificate chain and private key (PEM), and,
/// when `client_ca` is given, mutual TLS: a client must present a certificate that CA signed,
/// or its connection ends in the handshake (its bearer token is still checked after it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// The same files, a relative path taken from `dir` (the config file's folder).
    fn relative_to(self, dir: &Path) -> TlsConfig {
        TlsConfig {
            cert: dir.join(self.cert),
            key: dir.join(self.key),
            client_ca: self.client_ca.map(|c| dir.join(c)),
        }
    }
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
    /// Threads that serve connections, each with the connections it was handed (0: one per
    /// core).
    pub serving_threads: usize,
    pub tokens: Vec<TokenConfig>,
    /// TLS, and with a client CA mutual TLS; plaintext without it.
    pub tls: Option<TlsConfig>,
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
            serving_threads: 0,
            tokens: Vec::new(),
            tls: None,
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
        let mut c = ServerConfig::parse(&text, &path.display().to_string())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        c.tls = c.tls.map(|t| t.relative_to(dir));
        Ok(c)
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

    #[test]
    fn tls_files_are_found_beside_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        let text = "[[tokens]]\nname = \"a\"\ntoken = \"0123456789abcdef\"\nrole = \"admin\"\n\
                    [tls]\ncert = \"s.pem\"\nkey = \"/abs/s.key\"\nclient_ca = \"ca/ca.pem\"\n";
        std::fs::write(&path, text).unwrap();
        let tls = ServerConfig::load(&path).unwrap().tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("s.pem"));
        assert_eq!(tls.key, Path::new("/abs/s.key"));
        assert_eq!(tls.client_ca, Some(dir.path().join("ca/ca.pem")));
        let typo = format!("{text}clientca = \"x\"\n");
        assert!(
            ServerConfig::parse(&typo, "x").is_err(),
            "unknown keys are refused"
        );
        assert!(ServerConfig::demo().tls.is_none());
    }
}
