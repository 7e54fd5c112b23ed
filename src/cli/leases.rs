//! `leasehold leases list|show|revoke`: the operator's view of leases, read into the
//! server's [`LeaseOut`] and [`LeaseListOut`].

use serde_json::Value;

use crate::http::wire::{LeaseListOut, LeaseOut, timestamp};

use super::client::{Api, CliError};
use super::table::{Table, fields, or_dash};
use super::{LeaseListArgs, LeasesCommand, Output, pretty};

pub async fn run(api: &Api, json: bool, command: LeasesCommand) -> Result<Output, CliError> {
    match command {
        LeasesCommand::List(args) => list(api, json, args).await,
        LeasesCommand::Show { id } => {
            let lease = api.get(&["v1", "leases", &id], &[]).await?.body;
            one(json, lease)
        }
        LeasesCommand::Revoke { id } => {
            let lease = api.post(&["v1", "leases", &id, "revoke"]).await?.body;
            one(json, lease)
        }
    }
}

async fn list(api: &Api, json: bool, args: LeaseListArgs) -> Result<Output, CliError> {
    let query: Vec<(&str, String)> = [
        ("type", args.resource_type),
        ("guid", args.guid),
        ("holder", args.holder),
        ("state", args.state.map(|s| s.as_str().to_owned())),
        ("limit", args.limit.map(|n| n.to_string())),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
    .collect();
    let body = api.pages(&["v1", "leases"], query, args.all).await?;
    if json {
        return pretty(&body);
    }
    let page: LeaseListOut = decode(body)?;
    let mut output = Output::default();
    if page.items.is_empty() {
        output.note = Some("no leases match".into());
    } else {
        output.stdout = lease_table(&page.items);
    }
    if page.next_cursor.is_some() {
        output.note = Some("more leases follow: add --all to list every page".into());
    }
    Ok(output)
}

fn one(json: bool, body: Value) -> Result<Output, CliError> {
    if json {
        return pretty(&body);
    }
    let lease: LeaseOut = decode(body)?;
    Ok(Output::text(lease_fields(&lease)))
}

/// Reads a JSON answer into one of the server's wire types.
pub fn decode<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, CliError> {
    serde_json::from_value(body).map_err(|e| CliError::Unexpected(e.to_string()))
}

fn lease_table(leases: &[LeaseOut]) -> String {
    let mut table = Table::new(&[
        "ID",
        "TYPE",
        "GUID",
        "HOLDER",
        "TOKEN",
        "STATE",
        "EXPIRES_AT",
        "ENDED_AT",
    ]);
    for lease in leases {
        table.row(vec![
            lease.id.to_string(),
            lease.resource.resource_type.to_string(),
            lease.resource.guid.to_string(),
            lease.holder.clone(),
            lease.fencing_token.to_string(),
            lease.state.as_str().to_owned(),
            timestamp(&lease.expires_at),
            or_dash(lease.ended_at.as_ref().map(timestamp)),
        ]);
    }
    table.render()
}

fn lease_fields(lease: &LeaseOut) -> String {
    fields(&[
        ("id", lease.id.to_string()),
        (
            "resource",
            format!("{}/{}", lease.resource.resource_type, lease.resource.guid),
        ),
        ("holder", lease.holder.clone()),
        ("fencing_token", lease.fencing_token.to_string()),
        ("state", lease.state.as_str().to_owned()),
        ("ttl_seconds", lease.ttl_seconds.to_string()),
        ("acquired_at", timestamp(&lease.acquired_at)),
        ("renewed_at", timestamp(&lease.renewed_at)),
        ("expires_at", timestamp(&lease.expires_at)),
        ("ended_at", or_dash(lease.ended_at.as_ref().map(timestamp))),
    ])
}
