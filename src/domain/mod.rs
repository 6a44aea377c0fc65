//! The domain: aggregates, their commands and events, and the small value
//! types they share. Nothing here knows about HTTP, SQL or NATS.

pub mod catalog;
pub mod deploy;
mod field_error;
pub mod ids;
pub mod json;
pub mod location;
pub mod time;

use std::fmt;
use std::str::FromStr;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use field_error::FieldError;

/// Writes what a `decide` returned: each event applied to the aggregate and
/// collected for the append. Every aggregate's `handle` is this over its
/// pure `decide`.
pub(crate) async fn record<A: Aggregate>(
    aggregate: &mut A,
    decided: Result<Vec<A::Event>, A::Error>,
    sink: &EventSink<A>,
) -> Result<(), A::Error> {
    for event in decided? {
        sink.write(event, aggregate).await;
    }
    Ok(())
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "unknown value {s:?}; expected one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// Where a deploy is in its life. `completed`, `failed` and `cancelled`
    /// are terminal: nothing leaves them.
    DeployStatus {
        Pending => "pending",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl DeployStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeployStatus::Completed | DeployStatus::Failed | DeployStatus::Cancelled
        )
    }
}

string_enum!(
    /// What made a deploy.
    Trigger {
        Auto => "auto",
        Manual => "manual",
        Rollback => "rollback",
    }
);

string_enum!(
    /// Where a deploy goes: the entity's production URL, or a preview of
    /// its own only.
    Target {
        Production => "production",
        Preview => "preview",
    }
);

string_enum!(
    /// What happens when deploys of one entity pile up: `queue` runs them
    /// all, oldest first; `latest` cancels the older pending deploys of the
    /// same target when a new one is created.
    DeployPolicy {
        Queue => "queue",
        Latest => "latest",
    }
);

// The variants come from `string_enum!`, which cannot mark one `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for DeployPolicy {
    fn default() -> Self {
        DeployPolicy::Queue
    }
}

string_enum!(
    /// Where one step of a deploy is.
    StepStatus {
        Pending => "pending",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Discarded => "discarded",
        Skipped => "skipped",
    }
);

string_enum!(
    /// The steps a deploy runs, in this order (`deploy::STEPS` spells them
    /// as its events record them).
    StepName {
        Prepare => "prepare",
        Upload => "upload",
        Promote => "promote",
    }
);
