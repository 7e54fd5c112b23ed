//! `leasehold probe`: exit 0 when a path of a running leasehold answers 2xx, else 1 — a
//! Docker `HEALTHCHECK` for an image without curl. Prints nothing on success.

use std::time::Duration;

use super::client::{Api, CliError};
use super::{Output, ProbeArgs};

/// A health check that takes longer than this fails.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(api: &Api, args: &ProbeArgs) -> Result<Output, CliError> {
    let url = api.url_for_path(&args.path);
    let status = api.status_of(url.clone(), PROBE_TIMEOUT).await?;
    if (200..300).contains(&status) {
        Ok(Output::default())
    } else {
        Err(CliError::Unhealthy {
            url: url.to_string(),
            status,
        })
    }
}
