//! Leases: a time-bounded exclusive right of one holder over one resource, with a fencing
//! token. Every instant used here is the database's clock, handed in by the caller; nothing
//! in this module reads the local clock.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::ResourceKey;

/// The TTL a lease gets when the acquire names none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The shortest TTL a client may ask for.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// The longest TTL a client may ask for: a crashed holder blocks its resource at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// The longest an acquire may wait for a held lease.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// The longest lock-delay an acquire may ask for.
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// The longest a holder label may be, in Unicode characters.
pub const MAX_HOLDER_CHARS: usize = 128;

const _: () = assert!(MIN_TTL.as_secs() <= DEFAULT_TTL.as_secs());
const _: () = assert!(DEFAULT_TTL.as_secs() <= MAX_TTL.as_secs());

/// A lease's identifier, and (until authentication binds leases to principals) the
/// capability to renew and release it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub Uuid);

impl LeaseId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses a lease id from a path: any hyphenated UUID.
    pub fn parse(s: &str) -> Option<Self> {
        super::resource::parse_guid(s).ok().map(Self)
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A fencing token: per resource, strictly increasing with every grant, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who holds a lease: a free label, 1..=128 Unicode characters, unique per client process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Holder(String);

impl Holder {
    pub fn parse(s: String) -> Result<Self, String> {
        let chars = s.chars().count();
        if chars == 0 || chars > MAX_HOLDER_CHARS {
            return Err(format!(
                "holder must be 1 to {MAX_HOLDER_CHARS} characters long, got {chars}"
            ));
        }
        if s.chars().any(char::is_control) {
            return Err("holder must not contain control characters".into());
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A lease's time to live, within [`MIN_TTL`]..=[`MAX_TTL`], in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(u32);

impl Ttl {
    pub const DEFAULT: Ttl = Ttl(DEFAULT_TTL.as_secs() as u32);

    pub fn from_seconds(seconds: u64) -> Result<Self, String> {
        if seconds < MIN_TTL.as_secs() || seconds > MAX_TTL.as_secs() {
            return Err(format!(
                "ttl_seconds must be between {} and {}, got {seconds}",
                MIN_TTL.as_secs(),
                MAX_TTL.as_secs()
            ));
        }
        Ok(Self(seconds as u32))
    }

    pub fn seconds(self) -> u32 {
        self.0
    }

    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(i64::from(self.0))
    }
}

/// Where a lease stands. Only `Active` leases grant anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    Active,
    Released,
    Expired,
    Revoked,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// How an open lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    Released,
    Expired,
    Revoked,
}

impl LeaseEnd {
    pub fn as_str(self) -> &'static str {
        self.state().as_str()
    }

    pub fn state(self) -> LeaseState {
        match self {
            Self::Released => LeaseState::Released,
            Self::Expired => LeaseState::Expired,
            Self::Revoked => LeaseState::Revoked,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "released" => Some(Self::Released),
            "expired" => Some(Self::Expired),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// A lease as stored: `ended` is what has been recorded, which may lag behind expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: LeaseId,
    pub resource: ResourceKey,
    pub holder: String,
    /// The authenticated principal that took the lease (`None` without authentication).
    pub principal: Option<String>,
    pub fencing_token: FencingToken,
    pub ttl_seconds: u32,
    /// After this lease expires or is revoked, nobody may acquire for this long.
    pub lock_delay_seconds: u32,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended: Option<(LeaseEnd, DateTime<Utc>)>,
}

impl Lease {
    /// Who acts under this lease, for history: its principal with authentication, else
    /// its holder label.
    pub fn actor(&self) -> &str {
        self.principal.as_deref().unwrap_or(&self.holder)
    }

    /// The lease's state at `now`: an open lease whose time ran out is expired, at `expires_at`.
    pub fn state_at(&self, now: DateTime<Utc>) -> LeaseState {
        match self.ended_at(now) {
            None => LeaseState::Active,
            Some((end, _)) => end.state(),
        }
    }

    /// How and when the lease ended, as of `now`; `None` while it is active.
    pub fn ended_at(&self, now: DateTime<Utc>) -> Option<(LeaseEnd, DateTime<Utc>)> {
        match self.ended {
            Some(ended) => Some(ended),
            None if self.expires_at <= now => Some((LeaseEnd::Expired, self.expires_at)),
            None => None,
        }
    }

    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.ended_at(now).is_none()
    }

    /// Whole seconds until the lease expires, at least 1: the `Retry-After` for a contender.
    pub fn retry_after(&self, now: DateTime<Utc>) -> u64 {
        let millis = (self.expires_at - now).num_milliseconds().max(0) as u64;
        millis.div_ceil(1000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::resource::ResourceType;

    fn lease(expires_in_ms: i64) -> (Lease, DateTime<Utc>) {
        let now = Utc::now();
        let lease = Lease {
            id: LeaseId::new_random(),
            resource: ResourceKey {
                resource_type: ResourceType::Routes,
                guid: Uuid::new_v4(),
            },
            holder: "svc/1".into(),
            principal: None,
            fencing_token: FencingToken(1),
            ttl_seconds: 30,
            lock_delay_seconds: 0,
            acquired_at: now,
            renewed_at: now,
            expires_at: now + chrono::Duration::milliseconds(expires_in_ms),
            ended: None,
        };
        (lease, now)
    }

    #[test]
    fn an_open_lease_is_active_until_its_expiry_instant_and_expired_from_then_on() {
        let (l, now) = lease(1000);
        assert_eq!(l.state_at(now), LeaseState::Active);
        assert_eq!(l.state_at(l.expires_at), LeaseState::Expired);
        assert_eq!(
            l.ended_at(l.expires_at + chrono::Duration::seconds(5)),
            Some((LeaseEnd::Expired, l.expires_at))
        );
    }

    #[test]
    fn a_recorded_end_wins_over_the_expiry_time() {
        let (mut l, now) = lease(1000);
        l.ended = Some((LeaseEnd::Released, now));
        assert_eq!(l.state_at(now), LeaseState::Released);
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        let (l, now) = lease(1200);
        assert_eq!(l.retry_after(now), 2);
        assert_eq!(l.retry_after(l.expires_at), 1);
    }

    #[test]
    fn ttl_and_holder_bounds_are_enforced() {
        assert!(Ttl::from_seconds(0).is_err());
        assert!(Ttl::from_seconds(3601).is_err());
        assert_eq!(Ttl::from_seconds(3600).unwrap().seconds(), 3600);
        assert!(Holder::parse(String::new()).is_err());
        assert!(Holder::parse("é".repeat(128)).is_ok());
        assert!(Holder::parse("é".repeat(129)).is_err());
        assert!(Holder::parse("a\nb".into()).is_err());
    }
}
