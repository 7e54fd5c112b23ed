//! `leasehold resource show|history`: a resource's version (ETag), fence, lease, labels and
//! annotations, and its history — read into the server's [`ResourceOut`] and
//! [`HistoryListOut`].

use crate::domain::etag::etag;
use crate::http::wire::{HistoryListOut, LeaseOut, ResourceOut, timestamp};

use super::client::{Api, CliError};
use super::leases::decode;
use super::table::{Table, fields, or_dash};
use super::{Output, ResourceCommand, pretty};

pub async fn run(api: &Api, json: bool, command: ResourceCommand) -> Result<Output, CliError> {
    match command {
        ResourceCommand::Show {
            resource_type,
            guid,
        } => {
            let answer = api
                .get(&["v1", "resources", &resource_type, &guid], &[])
                .await?;
            if json {
                return pretty(&answer.body);
            }
            let resource: ResourceOut = decode(answer.body)?;
            let tag = answer.etag.unwrap_or_else(|| etag(resource.version));
            Ok(Output::text(show(&resource, &tag)))
        }
        ResourceCommand::History {
            resource_type,
            guid,
            limit,
            all,
        } => {
            let query: Vec<(&str, String)> = limit
                .map(|n| ("limit", n.to_string()))
                .into_iter()
                .collect();
            let body = api
                .pages(
                    &["v1", "resources", &resource_type, &guid, "history"],
                    query,
                    all,
                )
                .await?;
            if json {
                return pretty(&body);
            }
            let page: HistoryListOut = decode(body)?;
            let mut output = Output::default();
            if page.items.is_empty() {
                output.note = Some("no history".into());
            } else {
                output.stdout = history_table(&page);
            }
            if page.next_cursor.is_some() {
                output.note = Some("more entries follow: add --all to list every page".into());
            }
            Ok(output)
        }
    }
}

fn show(resource: &ResourceOut, tag: &str) -> String {
    let mut pairs = vec![
        (
            "resource",
            format!("{}/{}", resource.resource_type, resource.guid),
        ),
        ("version", resource.version.to_string()),
        ("etag", tag.to_owned()),
        ("fence", resource.fence.to_string()),
        ("lease", lease_summary(resource.lease.as_ref())),
    ];
    if resource.upstream.is_some() {
        pairs.push(("upstream", "Cloud Controller's body (see --json)".into()));
    }
    let mut out = fields(&pairs);
    out.push('\n');
    let metadata = &resource.metadata;
    if metadata.labels.is_empty() && metadata.annotations.is_empty() {
        out.push_str("no labels or annotations\n");
        return out;
    }
    let mut table = Table::new(&["KIND", "KEY", "VALUE"]);
    for (kind, entries) in [
        ("label", &metadata.labels),
        ("annotation", &metadata.annotations),
    ] {
        for (key, value) in entries {
            table.row(vec![kind.to_owned(), key.clone(), value.clone()]);
        }
    }
    out.push_str(&table.render());
    out
}

fn lease_summary(lease: Option<&LeaseOut>) -> String {
    match lease {
        None => "none".into(),
        Some(lease) => format!(
            "{} held by {}, token {}, {} until {}",
            lease.id,
            lease.holder,
            lease.fencing_token,
            lease.state.as_str(),
            timestamp(&lease.expires_at)
        ),
    }
}

fn history_table(page: &HistoryListOut) -> String {
    let mut table = Table::new(&["SEQ", "AT", "EVENT", "ACTOR", "TOKEN", "VERSION", "DETAIL"]);
    for entry in &page.items {
        table.row(vec![
            entry.seq.to_string(),
            timestamp(&entry.at),
            entry.event.clone(),
            or_dash(entry.actor.as_deref()),
            or_dash(entry.fencing_token),
            entry.version.to_string(),
            or_dash(entry.detail.as_ref()),
        ]);
    }
    table.render()
}
