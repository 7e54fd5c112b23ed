//! Versions and ETags. A resource's version is a counter; its ETag is the strong entity-tag
//! `"<version>"`. `If-Match` compares strongly (RFC 9110 §13.1.1), `If-None-Match` weakly.

/// A resource's version: 0 for a resource never written, +1 on every change.
pub type Version = u64;

/// The strong ETag of a version, quotes included.
pub fn etag(version: Version) -> String {
    format!("\"{version}\"")
}

/// A parsed `If-Match` or `If-None-Match` header: `*` or a list of entity-tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntityTags {
    Any,
    List(Vec<EntityTagValue>),
}

/// An entity-tag as sent: weak or strong, and its opaque value without quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTagValue {
    pub weak: bool,
    pub opaque: String,
}

impl EntityTags {
    /// Parses `"*"` or `1#entity-tag` (RFC 9110 §8.8.3). Returns a reason when malformed.
    pub fn parse(header: &str) -> Result<Self, String> {
        let header = header.trim();
        if header == "*" {
            return Ok(Self::Any);
        }
        let mut tags = Vec::new();
        for part in header.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            tags.push(parse_tag(part)?);
        }
        if tags.is_empty() {
            return Err("expected \"*\" or a list of entity-tags such as \"3\"".into());
        }
        Ok(Self::List(tags))
    }

    /// `If-Match` semantics: strong comparison; `*` matches only a resource that exists.
    pub fn matches_strongly(&self, version: Version, exists: bool) -> bool {
        match self {
            Self::Any => exists,
            Self::List(tags) => {
                let current = version.to_string();
                tags.iter().any(|t| !t.weak && t.opaque == current)
            }
        }
    }

    /// `If-None-Match` semantics: weak comparison; `*` matches only a resource that exists.
    pub fn matches_weakly(&self, version: Version, exists: bool) -> bool {
        match self {
            Self::Any => exists,
            Self::List(tags) => {
                let current = version.to_string();
                tags.iter().any(|t| t.opaque == current)
            }
        }
    }
}

fn parse_tag(s: &str) -> Result<EntityTagValue, String> {
    let (weak, rest) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let opaque = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| format!("entity-tag {s} must be quoted, e.g. \"3\""))?;
    // etagc = %x21 / %x23-7E / obs-text: visible ASCII except the double quote.
    if opaque
        .bytes()
        .any(|b| b == b'"' || !(0x21..=0x7e).contains(&b))
    {
        return Err(format!(
            "entity-tag {s} contains characters not allowed in an entity-tag"
        ));
    }
    Ok(EntityTagValue {
        weak,
        opaque: opaque.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_of_a_version_is_its_number_in_quotes() {
        assert_eq!(etag(0), "\"0\"");
        assert_eq!(etag(42), "\"42\"");
    }

    #[test]
    fn if_match_compares_strongly_and_star_needs_an_existing_resource() {
        let tags = EntityTags::parse("\"1\", W/\"2\", \"7\"").unwrap();
        assert!(tags.matches_strongly(1, true));
        assert!(
            !tags.matches_strongly(2, true),
            "weak tags never match strongly"
        );
        assert!(tags.matches_strongly(7, true));
        assert!(!tags.matches_strongly(3, true));
        assert!(
            EntityTags::parse("\"0\"")
                .unwrap()
                .matches_strongly(0, false)
        );
        assert!(EntityTags::parse("*").unwrap().matches_strongly(5, true));
        assert!(!EntityTags::parse("*").unwrap().matches_strongly(0, false));
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(
            EntityTags::parse("W/\"2\"")
                .unwrap()
                .matches_weakly(2, true)
        );
        assert!(!EntityTags::parse("\"3\"").unwrap().matches_weakly(2, true));
        assert!(EntityTags::parse("*").unwrap().matches_weakly(1, true));
        assert!(!EntityTags::parse("*").unwrap().matches_weakly(0, false));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in ["", "3", "\"3", "W/3", "\"a b\"", ",", "\"1\" \"2\""] {
            assert!(EntityTags::parse(bad).is_err(), "{bad:?}");
        }
    }
}
