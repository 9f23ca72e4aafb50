//! Keys: the valid identifiers one edit away from a broken one, and the stable keys of
//! entities that have no identifier (minted once, persisted, reused by the next build).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::records::Kind;
use crate::error::ResolveError;
use crate::ids::{pid_check_char, uscc_check_char};

const USCC_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Every identifier with a correct check character that is one substituted character or one
/// adjacent transposition away from `id` (an 18-character id number or USCC).
pub fn near_valid_ids(id: &[u8], uscc: bool) -> Vec<[u8; 18]> {
    let mut out = Vec::new();
    let Ok(id) = <[u8; 18]>::try_from(id) else {
        return out;
    };
    let check = |c: &[u8; 18]| {
        let want = if uscc {
            uscc_check_char(&c[..17])
        } else {
            pid_check_char(&c[..17])
        };
        want == Some(c[17])
    };
    let alphabet: &[u8] = if uscc { USCC_ALPHABET } else { b"0123456789" };
    // A wrong check character.
    let mut c = id;
    let right = if uscc {
        uscc_check_char(&id[..17])
    } else {
        pid_check_char(&id[..17])
    };
    if let Some(ch) = right
        && ch != id[17]
    {
        c[17] = ch;
        out.push(c);
    }
    // One substituted character in the body.
    for i in 0..17 {
        for &a in alphabet {
            if a == id[i] {
                continue;
            }
            let mut c = id;
            c[i] = a;
            if check(&c) {
                out.push(c);
            }
        }
    }
    // Two adjacent characters swapped.
    for i in 0..17 {
        if id[i] != id[i + 1] {
            let mut c = id;
            c.swap(i, i + 1);
            if check(&c) {
                out.push(c);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Minted keys of earlier builds: which key each record's entity had.
#[derive(Debug, Default)]
pub struct KeyStore {
    by_record: HashMap<(String, String), String>,
}

impl KeyStore {
    pub const FILE: &'static str = "minted_keys.csv";

    /// Reads `minted_keys.csv` (`key,kind,source,record_id`); a missing file is an empty store.
    pub fn load(path: &Path) -> Result<KeyStore, ResolveError> {
        let io = |e| ResolveError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyStore::default()),
            Err(e) => return Err(io(e)),
        };
        let mut store = KeyStore::default();
        for (n, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if n == 0 {
                continue;
            }
            let mut parts = line.splitn(4, ',');
            let (Some(key), Some(_kind), Some(source), Some(rid)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(ResolveError::Input(format!(
                    "{}:{}: expected key,kind,source,record_id",
                    path.display(),
                    n + 1
                )));
            };
            store
                .by_record
                .insert((source.to_string(), rid.to_string()), key.to_string());
        }
        Ok(store)
    }

    pub fn len(&self) -> usize {
        self.by_record.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_record.is_empty()
    }

    /// The key an earlier build gave this record's entity.
    pub fn previous(&self, source: &str, record_id: &str) -> Option<&str> {
        self.by_record
            .get(&(source.to_string(), record_id.to_string()))
            .map(String::as_str)
    }
}

/// A fresh key for an entity without an identifier, derived from its first record so that the
/// same records give the same key even without a key store; `salt` resolves collisions.
pub fn mint_key(kind: Kind, source: &str, record_id: &str, salt: u64) -> String {
    let mut b = Vec::with_capacity(source.len() + record_id.len() + 1);
    b.extend_from_slice(source.as_bytes());
    b.push(0x1f);
    b.extend_from_slice(record_id.as_bytes());
    format!("{}{:016X}", kind.mint_prefix(), xxh3_64_with_seed(&b, salt))
}

/// A minted key not yet `taken` (salted until it is free).
pub fn mint_unique(
    kind: Kind,
    source: &str,
    record_id: &str,
    taken: impl Fn(&str) -> bool,
) -> String {
    let mut salt = 0;
    loop {
        let k = mint_key(kind, source, record_id, salt);
        if !taken(&k) {
            return k;
        }
        salt += 1;
    }
}

/// Writes the minted keys and their records.
pub fn write_minted(
    path: &Path,
    rows: impl Iterator<Item = (String, Kind, String, String)>,
) -> Result<(), ResolveError> {
    let io = |e| ResolveError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut w = BufWriter::new(std::fs::File::create(path).map_err(io)?);
    writeln!(w, "key,kind,source,record_id").map_err(io)?;
    for (key, kind, source, rid) in rows {
        writeln!(w, "{key},{},{source},{rid}", kind.as_str()).map_err(io)?;
    }
    w.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_valid_id_behind_a_typo_and_a_transposition() {
        let good = *b"411403197312145170";
        let mut typo = good;
        typo[9] = b'4';
        assert!(near_valid_ids(&typo, false).contains(&good));
        let mut swapped = good;
        swapped.swap(10, 11);
        assert!(near_valid_ids(&swapped, false).contains(&good));
        for c in near_valid_ids(&typo, false) {
            assert_eq!(pid_check_char(&c[..17]), Some(c[17]));
        }
    }

    #[test]
    fn finds_the_valid_uscc_behind_a_typo() {
        let good = *b"91411403546535760B";
        assert_eq!(uscc_check_char(&good[..17]), Some(b'B'));
        let mut typo = good;
        typo[10] = b'7';
        assert!(near_valid_ids(&typo, true).contains(&good));
    }

    #[test]
    fn minted_keys_are_stable_and_salted() {
        let a = mint_key(Kind::Person, "DL.account", "17", 0);
        assert_eq!(a, mint_key(Kind::Person, "DL.account", "17", 0));
        assert_ne!(a, mint_key(Kind::Person, "DL.account", "17", 1));
        assert!(a.starts_with('P') && a.len() == 17);
    }
}
