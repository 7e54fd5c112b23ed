//! The write rule of API.md §2, as a pure function: given the resource's state inside the
//! critical section and the request's preconditions, may the mutation go ahead? Steps run
//! in the contract's order and the first that fails decides the answer.

use chrono::{DateTime, Utc};

use super::etag::{EntityTags, Version};
use super::lease::{FencingToken, Lease};
use super::metadata::{Expectations, Metadata, Mismatch};

/// What the request brings to be checked.
#[derive(Debug, Clone, Default)]
pub struct Preconditions {
    pub fencing_token: Option<FencingToken>,
    pub if_match: Option<EntityTags>,
    pub expect: Option<Expectations>,
}

/// The resource as seen inside the critical section.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub deleted: bool,
    pub version: Version,
    pub metadata: &'a Metadata,
    /// The lease active at `now`, if any.
    pub lease: Option<&'a Lease>,
    pub now: DateTime<Utc>,
}

/// Why a mutation is refused; each maps to one problem type.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Step 1: 410 `resource-deleted`.
    Deleted,
    /// Step 2: another holder's lease is active and no token was sent: 423 `resource-locked`.
    Locked {
        holder: String,
        expires_at: DateTime<Utc>,
    },
    /// Steps 2–3: the token is not the active lease's (or no lease is active): 409 `stale-fencing-token`.
    StaleToken {
        presented: FencingToken,
        current: Option<FencingToken>,
    },
    /// Step 5: `If-Match` does not match: 412 `precondition-failed`.
    PreconditionFailed { version: Version },
    /// Step 6: `expect` does not hold: 412 `expectation-failed`.
    ExpectationFailed { mismatches: Vec<Mismatch> },
    /// Step 7: the server requires `If-Match` or `Fencing-Token`: 428 `precondition-required`.
    PreconditionRequired,
}

/// Checks steps 1–3 and 5–7 of the write rule (step 8 is the change itself).
pub fn check(
    current: Current<'_>,
    pre: &Preconditions,
    require_preconditions: bool,
) -> Result<(), Refusal> {
    check_access(current, pre)?;
    check_conditions(current, pre, require_preconditions)
}

/// Steps 1–3: the resource is not deleted, and the caller holds the active lease if there
/// is one. With an upstream, step 4 (drift) runs between these and [`check_conditions`].
pub fn check_access(current: Current<'_>, pre: &Preconditions) -> Result<(), Refusal> {
    if current.deleted {
        return Err(Refusal::Deleted);
    }
    match (current.lease, pre.fencing_token) {
        (Some(lease), None) => {
            return Err(Refusal::Locked {
                holder: lease.holder.clone(),
                expires_at: lease.expires_at,
            });
        }
        (Some(lease), Some(token)) if token != lease.fencing_token => {
            return Err(Refusal::StaleToken {
                presented: token,
                current: Some(lease.fencing_token),
            });
        }
        (None, Some(token)) => {
            return Err(Refusal::StaleToken {
                presented: token,
                current: None,
            });
        }
        _ => {}
    }
    Ok(())
}

/// Steps 5–7: `If-Match`, `expect`, and preconditions required by the server.
pub fn check_conditions(
    current: Current<'_>,
    pre: &Preconditions,
    require_preconditions: bool,
) -> Result<(), Refusal> {
    if let Some(if_match) = &pre.if_match {
        let exists = current.version > 0;
        if !if_match.matches_strongly(current.version, exists) {
            return Err(Refusal::PreconditionFailed {
                version: current.version,
            });
        }
    }
    if let Some(expect) = &pre.expect {
        let mismatches = current.metadata.mismatches(expect);
        if !mismatches.is_empty() {
            return Err(Refusal::ExpectationFailed { mismatches });
        }
    }
    if require_preconditions && pre.if_match.is_none() && pre.fencing_token.is_none() {
        return Err(Refusal::PreconditionRequired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lease::LeaseId;
    use crate::domain::resource::{ResourceKey, ResourceType};

    fn lease(token: u64, now: DateTime<Utc>) -> Lease {
        Lease {
            id: LeaseId::new_random(),
            resource: ResourceKey {
                resource_type: ResourceType::Routes,
                guid: uuid::Uuid::new_v4(),
            },
            holder: "a".into(),
            principal: None,
            fencing_token: FencingToken(token),
            ttl_seconds: 30,
            lock_delay_seconds: 0,
            acquired_at: now,
            renewed_at: now,
            expires_at: now + chrono::Duration::seconds(30),
            ended: None,
        }
    }

    fn pre(
        token: Option<u64>,
        if_match: Option<&str>,
        expect_absent: Option<&str>,
    ) -> Preconditions {
        Preconditions {
            fencing_token: token.map(FencingToken),
            if_match: if_match.map(|h| EntityTags::parse(h).unwrap()),
            expect: expect_absent.map(|k| Expectations {
                labels: [(k.to_string(), None)].into(),
                annotations: Default::default(),
            }),
        }
    }

    #[test]
    fn the_write_rule_decides_in_the_contract_order() {
        let now = Utc::now();
        let held = lease(7, now);
        let mut with_label = Metadata::default();
        with_label.labels.insert("used".into(), "yes".into());
        let empty = Metadata::default();
        let state = |deleted, version, metadata, lease| Current {
            deleted,
            version,
            metadata,
            lease,
            now,
        };
        use Refusal::*;
        type Case<'a> = (
            &'a str,
            Current<'a>,
            Preconditions,
            bool,
            Result<(), Refusal>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "deleted beats everything",
                state(true, 3, &empty, Some(&held)),
                pre(Some(1), Some("\"9\""), None),
                true,
                Err(Deleted),
            ),
            (
                "a lease without a token is locked",
                state(false, 3, &empty, Some(&held)),
                pre(None, Some("\"3\""), None),
                false,
                Err(Locked {
                    holder: "a".into(),
                    expires_at: held.expires_at,
                }),
            ),
            (
                "a wrong token is stale",
                state(false, 3, &empty, Some(&held)),
                pre(Some(6), None, None),
                false,
                Err(StaleToken {
                    presented: FencingToken(6),
                    current: Some(FencingToken(7)),
                }),
            ),
            (
                "a token with no lease is stale",
                state(false, 3, &empty, None),
                pre(Some(7), Some("\"3\""), None),
                false,
                Err(StaleToken {
                    presented: FencingToken(7),
                    current: None,
                }),
            ),
            (
                "the right token passes",
                state(false, 3, &empty, Some(&held)),
                pre(Some(7), None, None),
                true,
                Ok(()),
            ),
            (
                "stale token beats If-Match",
                state(false, 3, &empty, Some(&held)),
                pre(Some(8), Some("\"2\""), None),
                false,
                Err(StaleToken {
                    presented: FencingToken(8),
                    current: Some(FencingToken(7)),
                }),
            ),
            (
                "If-Match mismatch fails with the lease's token",
                state(false, 3, &empty, Some(&held)),
                pre(Some(7), Some("\"2\""), None),
                false,
                Err(PreconditionFailed { version: 3 }),
            ),
            (
                "version 0 matches \"0\"",
                state(false, 0, &empty, None),
                pre(None, Some("\"0\""), None),
                true,
                Ok(()),
            ),
            (
                "star needs an existing resource",
                state(false, 0, &empty, None),
                pre(None, Some("*"), None),
                false,
                Err(PreconditionFailed { version: 0 }),
            ),
            (
                "star matches a written resource",
                state(false, 1, &empty, None),
                pre(None, Some("*"), None),
                false,
                Ok(()),
            ),
            (
                "If-Match beats expect",
                state(false, 1, &with_label, None),
                pre(None, Some("\"0\""), Some("used")),
                false,
                Err(PreconditionFailed { version: 1 }),
            ),
            (
                "expect fails on a present key",
                state(false, 1, &with_label, None),
                pre(None, Some("\"1\""), Some("used")),
                false,
                Err(ExpectationFailed {
                    mismatches: vec![Mismatch {
                        kind: crate::domain::metadata::Kind::Labels,
                        key: "used".into(),
                        expected: None,
                        actual: Some("yes".into()),
                    }],
                }),
            ),
            (
                "expect beats precondition-required",
                state(false, 1, &with_label, None),
                pre(None, None, Some("used")),
                true,
                Err(ExpectationFailed {
                    mismatches: vec![Mismatch {
                        kind: crate::domain::metadata::Kind::Labels,
                        key: "used".into(),
                        expected: None,
                        actual: Some("yes".into()),
                    }],
                }),
            ),
            (
                "no precondition when required",
                state(false, 1, &empty, None),
                pre(None, None, Some("used")),
                true,
                Err(PreconditionRequired),
            ),
            (
                "no precondition when not required",
                state(false, 1, &empty, None),
                pre(None, None, None),
                false,
                Ok(()),
            ),
        ];
        for (name, current, pre, required, expected) in cases {
            assert_eq!(check(current, &pre, required), expected, "{name}");
        }
    }
}
