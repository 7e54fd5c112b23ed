//! ccsim's configuration.
//!
//! This module owns [`Config`] (everything the command line and environment can set; also
//! built directly by tests) and [`ClientConfig`], the UAA clients parsed from
//! `id:secret:scope1,scope2`.

use crate::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// One UAA OAuth client allowed to use `grant_type=client_credentials`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// `client_id`.
    pub id: String,
    /// `client_secret`.
    pub secret: String,
    /// The client's authorities, issued as the token's scopes.
    pub scopes: Vec<String>,
}

impl ClientConfig {
    /// A client with the given id, secret and scopes.
    pub fn new(id: &str, secret: &str, scopes: &[&str]) -> Self {
        Self {
            id: id.to_string(),
            secret: secret.to_string(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl FromStr for ClientConfig {
    type Err = Error;

    /// `id:secret:scope1,scope2` (the scope list may be empty; the secret cannot hold `:`).
    fn from_str(spec: &str) -> Result<Self, Error> {
        let mut parts = spec.trim().splitn(3, ':');
        let (Some(id), Some(secret), scopes) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::Client(spec.to_string()));
        };
        if id.is_empty() || secret.is_empty() || secret.contains(':') {
            return Err(Error::Client(spec.to_string()));
        }
        let scopes = scopes
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Self {
            id: id.to_string(),
            secret: secret.to_string(),
            scopes,
        })
    }
}

/// Parses several clients separated by `;` or whitespace (commas separate scopes).
pub fn parse_clients(spec: &str) -> Result<Vec<ClientConfig>, Error> {
    spec.split(|c: char| c == ';' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(ClientConfig::from_str)
        .collect()
}

/// Everything ccsim can be configured with. `Config::default()` suits in-process tests: it
/// listens on `127.0.0.1:0` (a free port).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Base URL used in links and `Location` headers (e.g. `http://ccsim:9090` behind Docker);
    /// default `http://<bound address>`.
    pub public_url: Option<String>,
    /// UAA clients.
    pub clients: Vec<ClientConfig>,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// How long a delete job stays `PROCESSING`.
    pub job_delay: Duration,
    /// CC's `max_labels_per_resource`.
    pub max_labels: usize,
    /// CC's `max_annotations_per_resource`.
    pub max_annotations: usize,
    /// A JSON file holding an array of `{"type", "body"}` loaded at start.
    pub seed_file: Option<PathBuf>,
    /// Not CC: a GET, PATCH or DELETE of an unknown GUID of a known type first creates the
    /// resource in its default shape (once: a deleted resource stays gone). Lets a test suite
    /// written against fresh GUIDs run unchanged against the emulator.
    pub auto_create: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            clients: vec![default_client()],
            token_ttl: Duration::from_secs(3600),
            job_delay: Duration::from_millis(200),
            max_labels: 50,
            max_annotations: 200,
            seed_file: None,
            auto_create: false,
        }
    }
}

/// `leasehold:leasehold-secret:cloud_controller.read,cloud_controller.write`.
pub fn default_client() -> ClientConfig {
    ClientConfig::new(
        "leasehold",
        "leasehold-secret",
        &["cloud_controller.read", "cloud_controller.write"],
    )
}

/// The default `--clients` value, in its textual form.
pub const DEFAULT_CLIENTS: &str =
    "leasehold:leasehold-secret:cloud_controller.read,cloud_controller.write";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_parse_from_id_secret_scopes() {
        let clients = parse_clients("a:b:x.read,x.write; ro:pw:cloud_controller.read n:s")
            .expect("valid clients");
        assert_eq!(
            clients[0],
            ClientConfig::new("a", "b", &["x.read", "x.write"])
        );
        assert_eq!(
            clients[1],
            ClientConfig::new("ro", "pw", &["cloud_controller.read"])
        );
        assert_eq!(clients[2], ClientConfig::new("n", "s", &[]));
        assert_eq!(
            parse_clients(DEFAULT_CLIENTS).expect("default"),
            vec![default_client()]
        );
        assert!(parse_clients("nosecret").is_err());
        assert!(parse_clients(":x:y").is_err());
    }
}
