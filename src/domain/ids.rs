//! Prefixed ULID identifiers, one newtype each (DESIGN.md decision 7).
//!
//! An id is `<prefix>_<ULID>`, e.g. `dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M`. Parsing
//! accepts the ULID in either case and always prints the canonical upper-case
//! form, so an id read back from deployd is byte-for-byte the one stored.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an id of the form {expected}<ULID>, got {got:?}")]
pub struct IdError {
    pub expected: &'static str,
    pub got: String,
}

fn parse_prefixed(s: &str, prefixes: &[&'static str]) -> Result<(&'static str, Ulid), IdError> {
    for prefix in prefixes {
        if let Some(rest) = s.strip_prefix(prefix) {
            if rest.len() == 26 {
                if let Ok(ulid) = Ulid::from_string(rest) {
                    return Ok((prefix, ulid));
                }
            }
        }
    }
    Err(IdError {
        expected: prefixes[0],
        got: s.chars().take(64).collect(),
    })
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id, unique and roughly time-ordered.
            pub fn generate() -> Self {
                Self(Ulid::generate())
            }

            pub fn ulid(&self) -> Ulid {
                self.0
            }

            /// The id with this ULID (ids derived from another id).
            pub fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_prefixed(s, &[$prefix]).map(|(_, ulid)| Self(ulid))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": concat!("^", $prefix, "[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"),
                })
            }
        }
    };
}

prefixed_id!(
    /// A deploy.
    DeployId, "dep_"
);
prefixed_id!(
    /// A workspace: the unit of tenancy.
    WorkspaceId, "ws_"
);
prefixed_id!(
    /// A version of an entity.
    VersionId, "ver_"
);
prefixed_id!(
    /// A build of an entity's version.
    BuildId, "bld_"
);
prefixed_id!(
    /// An event, ours or upstream.
    EventId, "evt_"
);
prefixed_id!(
    /// An API token.
    TokenId, "tok_"
);
prefixed_id!(
    /// A webhook endpoint.
    WebhookId, "whk_"
);
prefixed_id!(
    /// One event's delivery to one webhook.
    DeliveryId, "whd_"
);

/// The kind of a deployable entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    App,
    Function,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::App => "app",
            EntityKind::Function => "function",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            EntityKind::App => "app_",
            EntityKind::Function => "fn_",
        }
    }
}

/// An app (`app_…`) or a function (`fn_…`): what a deploy puts live.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId {
    kind: EntityKind,
    ulid: Ulid,
}

impl PartialOrd for EntityKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for EntityKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl EntityId {
    pub fn new(kind: EntityKind) -> Self {
        Self {
            kind,
            ulid: Ulid::generate(),
        }
    }
    pub fn kind(&self) -> EntityKind {
        self.kind
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), self.ulid)
    }
}

impl fmt::Debug for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for EntityId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let (prefix, ulid) = parse_prefixed(s, &["app_", "fn_"])?;
        let kind = if prefix == "app_" {
            EntityKind::App
        } else {
            EntityKind::Function
        };
        Ok(Self { kind, ulid })
    }
}

impl Serialize for EntityId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntityId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for EntityId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EntityId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(app|fn)_[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_prints_as_it_was_parsed_in_canonical_case() {
        let id: DeployId = "dep_01jdq2v7c8x3zj8q6y0w6h4k5m".parse().unwrap();
        assert_eq!(id.to_string(), "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M");
        let again: DeployId = id.to_string().parse().unwrap();
        assert_eq!(id, again);
    }

    #[test]
    fn an_id_with_the_wrong_prefix_or_body_is_refused() {
        assert!("ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse::<DeployId>().is_err());
        assert!("dep_123".parse::<DeployId>().is_err());
        assert!("dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5MX"
            .parse::<DeployId>()
            .is_err());
        assert!("".parse::<DeployId>().is_err());
    }

    #[test]
    fn entity_ids_carry_their_kind() {
        let app: EntityId = "app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap();
        let func: EntityId = "fn_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap();
        assert_eq!(app.kind(), EntityKind::App);
        assert_eq!(func.kind(), EntityKind::Function);
        assert_ne!(app, func);
        assert!("svc_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"
            .parse::<EntityId>()
            .is_err());
    }
}
