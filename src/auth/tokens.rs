//! Static bearer tokens for sites without UAA: a JSON file listing, per token, the SHA-256
//! of the token (hex), its principal and scopes. Only hashes are stored; a leaked file does
//! not leak tokens. Reloaded on SIGHUP; a file that fails to load keeps the previous set.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{AuthError, Principal};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    tokens: Vec<TokenIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenIn {
    sha256: String,
    principal: String,
    scopes: BTreeSet<String>,
}

pub struct TokenFile {
    path: PathBuf,
    by_hash: RwLock<HashMap<String, Principal>>,
}

/// Hex SHA-256 of a token, as the file lists it.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn load(path: &Path) -> Result<HashMap<String, Principal>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: FileIn =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut by_hash = HashMap::new();
    for t in file.tokens {
        let digest = t.sha256.to_ascii_lowercase();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{}: '{}' is not a hex SHA-256",
                path.display(),
                t.sha256
            ));
        }
        if t.principal.is_empty() {
            return Err(format!(
                "{}: a token has an empty principal",
                path.display()
            ));
        }
        by_hash.insert(
            digest,
            Principal {
                name: t.principal,
                scopes: t.scopes,
            },
        );
    }
    Ok(by_hash)
}

impl TokenFile {
    pub fn open(path: PathBuf) -> Result<Self, String> {
        let by_hash = RwLock::new(load(&path)?);
        Ok(Self { path, by_hash })
    }

    /// Loads the file again; on failure the tokens in force stay.
    pub fn reload(&self) -> Result<usize, String> {
        let fresh = load(&self.path)?;
        let n = fresh.len();
        *self.by_hash.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(n)
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.by_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash(token))
            .cloned()
            .ok_or_else(|| AuthError::Invalid("unknown token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_matched_by_hash_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("lh-tokens-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.json");
        let write = |token: &str, principal: &str| {
            let body = serde_json::json!({"tokens": [
                {"sha256": hash(token), "principal": principal, "scopes": ["leasehold.read"]}
            ]});
            std::fs::write(&path, body.to_string()).unwrap();
        };
        write("s3cret", "orders");
        let file = TokenFile::open(path.clone()).unwrap();
        assert_eq!(file.verify("s3cret").unwrap().name, "orders");
        assert!(file.verify("other").is_err());
        write("new-one", "billing");
        assert_eq!(file.reload().unwrap(), 1);
        assert!(file.verify("s3cret").is_err());
        assert_eq!(file.verify("new-one").unwrap().name, "billing");
        std::fs::write(&path, "not json").unwrap();
        assert!(file.reload().is_err());
        assert_eq!(
            file.verify("new-one").unwrap().name,
            "billing",
            "a bad file keeps the old set"
        );
    }
}
