//! Schema evolution: upcasters turn an event stored in an older version into
//! the current one wherever events are read (the aggregate load path through
//! cqrs-es, and `store::log` for projections, replay, export and `asOf`), so
//! the code only ever sees current versions. Stored rows are never
//! rewritten: the hash chain covers the bytes as stored.
//!
//! The rule for changing an event is in `event-schemas/README.md`.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::Value;

/// One step from one version of an event type to the next.
pub struct Upcaster {
    pub event_type: &'static str,
    /// The stored version this upcaster reads…
    pub from: &'static str,
    /// …and the version it produces.
    pub to: &'static str,
    /// Rewrites the event's data (without the `{"<Type>": …}` envelope).
    pub upcast: fn(&mut serde_json::Map<String, Value>),
}

/// Every upcaster, oldest first. A stored event runs through each that
/// matches its (type, version) in turn, so v1 → v2 → v3 chains.
pub const UPCASTERS: &[Upcaster] = &[
    Upcaster {
        event_type: "DeployCreated",
        from: "1",
        to: "2",
        // v2 records the build's version (`versionId`); a v1 event did not know
        // it, and the log alone cannot tell, so it reads as null.
        upcast: |data| {
            data.entry("versionId").or_insert(Value::Null);
        },
    },
    Upcaster {
        event_type: "DeployCreated",
        from: "2",
        to: "3",
        // v3 records the `target`. Before it, a deploy went to production
        // when its build was of the entity's default version, which the
        // event alone cannot tell: it reads as `production` (what every
        // create by app and every auto-deploy was). Whether it went live is
        // on its `DeployCompleted` (v1 → v2 below), so `live` stays exact.
        upcast: |data| {
            data.entry("target").or_insert(Value::from("production"));
            for field in ["rollbackOf", "promotedFrom", "reason"] {
                data.entry(field).or_insert(Value::Null);
            }
        },
    },
    Upcaster {
        event_type: "DeployCompleted",
        from: "1",
        to: "2",
        // v2 records what the completion did to production. Before it, the
        // entity's newest completed deploy with a production URL was live,
        // and nothing pinned production.
        upcast: |data| {
            let production = data.get("productionUrl").is_some_and(|url| !url.is_null());
            let release = if production {
                serde_json::json!({"live": true, "pinnedBy": null})
            } else {
                Value::Null
            };
            data.entry("release").or_insert(release);
        },
    },
    Upcaster {
        event_type: "DeployCompleted",
        from: "2",
        to: "3",
        // v3 records where the deploy is served as a location: deployd's own
        // serving as a path (the host is the server's public URL when it
        // answers), another host's as its URL. Before it, deployd's own
        // serving was recorded under the public URL of the process that ran
        // the step; those read as their paths, so an imported or moved log
        // answers the current host.
        upcast: |data| localise(data),
    },
    Upcaster {
        event_type: "StepCompleted",
        from: "1",
        to: "2",
        // The same for the promote step's output.
        upcast: |data| {
            if let Some(Value::Object(output)) = data.get_mut("output") {
                localise(output);
            }
        },
    },
    Upcaster {
        event_type: "EntityUpserted",
        from: "1",
        to: "2",
        // v2 records the `deployPolicy`; before it every entity queued.
        upcast: |data| {
            data.entry("deployPolicy").or_insert(Value::from("queue"));
        },
    },
];

/// `previewUrl` and `productionUrl` of deployd's own serving, as paths.
fn localise(urls: &mut serde_json::Map<String, Value>) {
    for key in ["previewUrl", "productionUrl"] {
        if let Some(Value::String(url)) = urls.get_mut(key) {
            if let Some(path) = crate::domain::location::served_path(url) {
                *url = path;
            }
        }
    }
}

/// Brings a stored `(version, payload)` of `event_type` to the current
/// version, in place. `payload` is the stored `{"<Type>": data}` envelope.
pub fn upcast(event_type: &str, version: &mut String, payload: &mut Value) {
    for u in UPCASTERS {
        if u.event_type == event_type && u.from == version {
            if let Some(Value::Object(data)) = payload.get_mut(event_type) {
                (u.upcast)(data);
            }
            *version = u.to.to_string();
        }
    }
}

/// The same upcasters, for cqrs-es's load path.
struct ForCqrs;

impl EventUpcaster for ForCqrs {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        UPCASTERS
            .iter()
            .any(|u| u.event_type == event_type && u.from == event_version)
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        upcast(
            &event.event_type,
            &mut event.event_version,
            &mut event.payload,
        );
        event
    }
}

/// What `PersistedEventStore::with_upcasters` takes.
pub fn for_cqrs() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(ForCqrs)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_v1_deploy_created_reads_as_v3_with_a_null_version_id_and_production() {
        let mut version = "1".to_string();
        let mut payload = json!({"DeployCreated": {"deployId": "dep_x"}});
        upcast("DeployCreated", &mut version, &mut payload);
        assert_eq!(version, "3");
        assert_eq!(
            payload,
            json!({"DeployCreated": {"deployId": "dep_x", "versionId": null,
                "target": "production", "rollbackOf": null, "promotedFrom": null, "reason": null}})
        );
    }

    #[test]
    fn a_v1_deploy_completed_with_a_production_url_reads_as_live_and_without_as_no_release() {
        let mut version = "1".to_string();
        let mut payload =
            json!({"DeployCompleted": {"productionUrl": "http://x/", "previewUrl": null}});
        upcast("DeployCompleted", &mut version, &mut payload);
        assert_eq!(version, "3");
        assert_eq!(
            payload["DeployCompleted"]["release"],
            json!({"live": true, "pinnedBy": null})
        );
        let mut version = "1".to_string();
        let mut payload =
            json!({"DeployCompleted": {"productionUrl": null, "previewUrl": "http://y/"}});
        upcast("DeployCompleted", &mut version, &mut payload);
        assert_eq!(payload["DeployCompleted"]["release"], Value::Null);
    }

    #[test]
    fn urls_of_deployds_own_serving_read_as_paths_and_others_stay() {
        let dep = "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
        let ent = "fn_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
        let mut version = "2".to_string();
        let mut payload = json!({"DeployCompleted": {
            "previewUrl": format!("http://127.0.0.1:8080/preview/{dep}/"),
            "productionUrl": format!("http://127.0.0.1:8080/live/{ent}/"),
            "release": null}});
        upcast("DeployCompleted", &mut version, &mut payload);
        assert_eq!(version, "3");
        assert_eq!(
            payload["DeployCompleted"]["previewUrl"],
            format!("/preview/{dep}/")
        );
        assert_eq!(
            payload["DeployCompleted"]["productionUrl"],
            format!("/live/{ent}/")
        );

        let mut version = "2".to_string();
        let mut payload = json!({"DeployCompleted": {
            "previewUrl": "https://abc.site.pages.dev", "productionUrl": null}});
        upcast("DeployCompleted", &mut version, &mut payload);
        assert_eq!(
            payload["DeployCompleted"]["previewUrl"],
            "https://abc.site.pages.dev"
        );

        let mut version = "1".to_string();
        let mut payload = json!({"StepCompleted": {"step": "promote", "output": {
            "previewUrl": format!("https://old.example/preview/{dep}/"), "productionUrl": null}}});
        upcast("StepCompleted", &mut version, &mut payload);
        assert_eq!(version, "2");
        assert_eq!(
            payload["StepCompleted"]["output"]["previewUrl"],
            format!("/preview/{dep}/")
        );
    }

    #[test]
    fn a_v1_entity_upserted_reads_as_queueing() {
        let mut version = "1".to_string();
        let mut payload = json!({"EntityUpserted": {"name": "web"}});
        upcast("EntityUpserted", &mut version, &mut payload);
        assert_eq!(version, "2");
        assert_eq!(payload["EntityUpserted"]["deployPolicy"], "queue");
    }

    #[test]
    fn a_current_event_is_left_alone() {
        let mut version = "3".to_string();
        let mut payload = json!({"DeployCreated": {"versionId": "ver_1"}});
        upcast("DeployCreated", &mut version, &mut payload);
        assert_eq!(version, "3");
        assert_eq!(payload, json!({"DeployCreated": {"versionId": "ver_1"}}));
    }

    #[test]
    fn cqrs_es_loads_a_v1_deploy_created_through_the_same_upcaster() {
        let upcasters = for_cqrs();
        let u = &upcasters[0];
        assert!(u.can_upcast("DeployCreated", "1"));
        assert!(u.can_upcast("DeployCreated", "2"));
        assert!(!u.can_upcast("DeployCreated", "3"));
        assert!(!u.can_upcast("DeployStarted", "1"));
        let event = SerializedEvent::new(
            "dep_x".into(),
            1,
            "Deploy".into(),
            "DeployCreated".into(),
            "1".into(),
            json!({"DeployCreated": {"deployId": "dep_x"}}),
            json!({}),
        );
        let event = u.upcast(event);
        assert_eq!(event.event_version, "3");
        assert_eq!(event.payload["DeployCreated"]["versionId"], Value::Null);
        assert_eq!(event.payload["DeployCreated"]["target"], "production");
    }
}
