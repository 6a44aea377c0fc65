//! The AsyncAPI 3.0 document of deployd's feeds (`GET /api/asyncapi.json`):
//! the NATS channels of every event type and of the catalog documents,
//! their messages and payloads, and the webhook POST. Payload schemas are
//! the ones `event-schemas/` holds ([`crate::schemas::all`], from the same
//! types), their `$defs` hoisted into `components/schemas`.

use serde_json::{json, Map, Value};

use crate::feeds::{PublishedEvent, EVENT_TYPES};

/// The aggregate an event type belongs to.
fn aggregate_of(event_type: &str) -> &'static str {
    if event_type.starts_with("Build") {
        "Build"
    } else if event_type.starts_with("Entity") {
        "Entity"
    } else {
        "Deploy"
    }
}

/// Moves a schema's `$defs` into `defs` and points its references there.
fn hoist(mut schema: Value, defs: &mut Map<String, Value>) -> Value {
    if let Some(Value::Object(inner)) = schema.as_object_mut().and_then(|s| s.remove("$defs")) {
        for (name, def) in inner {
            let def = hoist(def, defs);
            defs.insert(name, def);
        }
    }
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    rewrite_refs(&mut schema);
    schema
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{name}");
                }
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn header(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

/// The document, for an installation whose NATS prefix is `prefix`.
pub fn document(prefix: &str) -> Value {
    let mut schemas = Map::new();
    let mut defs = Map::new();
    // The data of each event type, at its current version.
    let mut data_schema: Map<String, Value> = Map::new();
    let mut catalog: Vec<(String, Value)> = Vec::new();
    for (path, schema) in crate::schemas::all() {
        let schema = hoist(schema.to_value(), &mut defs);
        if let Some(file) = path.strip_prefix("events/") {
            let (name, version) = file
                .trim_end_matches(".json")
                .split_once(".v")
                .unwrap_or((file, "1"));
            let newer = data_schema
                .get(name)
                .and_then(|s| s.get("x-version"))
                .and_then(Value::as_str)
                .is_some_and(|v| v >= version);
            if !newer {
                let mut schema = schema;
                schema["x-version"] = json!(version);
                data_schema.insert(name.to_string(), schema);
            }
        } else if let Some(file) = path.strip_prefix("catalog/") {
            catalog.push((file.trim_end_matches(".json").to_string(), schema));
        }
    }
    let envelope = hoist(
        schemars::schema_for!(PublishedEvent<'static>).to_value(),
        &mut defs,
    );
    schemas.insert("Event".into(), envelope);
    schemas.insert(
        "NatsEventHeaders".into(),
        json!({
            "type": "object",
            "properties": {
                "Nats-Msg-Id": header("the eventId: JetStream drops a republished event within its duplicate window"),
                "Deployd-Event-Type": header("the event type"),
                "Deployd-Event-Version": header("the version of the event's data schema"),
                "Deployd-Position": header("the event's position in the log"),
                "ce-specversion": {"const": "1.0"},
                "ce-id": header("CloudEvents id: the eventId"),
                "ce-type": header("CloudEvents type: dev.deployd.<EventType>"),
                "ce-source": header("CloudEvents source: /workspaces/<workspaceId>"),
                "ce-subject": header("CloudEvents subject: the aggregate id"),
                "ce-time": header("CloudEvents time: recordedAt"),
                "content-type": {"const": "application/json"}
            }
        }),
    );
    schemas.insert(
        "WebhookHeaders".into(),
        json!({
            "type": "object",
            "required": ["webhook-id", "webhook-timestamp", "webhook-signature"],
            "properties": {
                "webhook-id": header("the eventId (de-duplicate by it)"),
                "webhook-timestamp": header("Unix seconds of this attempt"),
                "webhook-signature": header(
                    "Standard Webhooks: v1,<base64 of HMAC-SHA256(key, \"<webhook-id>.<webhook-timestamp>.<body>\")>, \
                     key being the base64-decoded part of the secret after whsec_; space-separated, \
                     one per secret, during a rotation"),
                "content-type": {"const": "application/json"}
            }
        }),
    );

    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    let workspace_parameter = json!({"description": "The workspace (ws_…) the event belongs to."});
    for event_type in EVENT_TYPES {
        let aggregate = aggregate_of(event_type);
        let mut data = data_schema.remove(*event_type).unwrap_or(json!({}));
        let version = data
            .as_object_mut()
            .and_then(|d| d.remove("x-version"))
            .unwrap_or(json!("1"));
        schemas.insert(event_type.to_string(), data);
        schemas.insert(
            format!("{event_type}Event"),
            json!({
                "allOf": [
                    {"$ref": "#/components/schemas/Event"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event_type},
                            "aggregateType": {"const": aggregate},
                            "version": {"const": version},
                            "data": {"$ref": format!("#/components/schemas/{event_type}")}
                        }
                    }
                ]
            }),
        );
        messages.insert(
            event_type.to_string(),
            json!({
                "name": event_type,
                "title": event_type,
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/NatsEventHeaders"},
                "payload": {"$ref": format!("#/components/schemas/{event_type}Event")}
            }),
        );
        channels.insert(
            event_type.to_string(),
            json!({
                "address": format!("{prefix}.events.{{workspaceId}}.{aggregate}.{event_type}"),
                "title": format!("{event_type} events"),
                "description": format!(
                    "Every {event_type} event, published by the relay in log order to JetStream \
                     stream {prefix}_events (kept 30 days); at least once, de-duplicated by eventId."
                ),
                "parameters": {"workspaceId": workspace_parameter},
                "messages": {
                    *event_type: {"$ref": format!("#/components/messages/{event_type}")}
                }
            }),
        );
        operations.insert(
            format!("receive{event_type}"),
            json!({
                "action": "receive",
                "channel": {"$ref": format!("#/channels/{event_type}")},
                "messages": [{"$ref": format!("#/channels/{event_type}/messages/{event_type}")}]
            }),
        );
    }
    for (name, schema) in catalog {
        let key = format!("catalog_{}", name.replace('.', "_"));
        let kind = if name.starts_with("entity") {
            "entity"
        } else {
            "build"
        };
        schemas.insert(key.clone(), schema);
        messages.insert(
            key.clone(),
            json!({
                "name": name,
                "contentType": "application/json",
                "payload": {"$ref": format!("#/components/schemas/{key}")}
            }),
        );
        channels.insert(
            key.clone(),
            json!({
                "address": format!("{prefix}.catalog.{{workspaceId}}.{kind}"),
                "title": format!("catalog documents: {name}"),
                "description": format!(
                    "Upstream catalog documents deployd consumes (stream {prefix}_catalog); \
                     `deployd catalog import` reads the same lines."
                ),
                "parameters": {"workspaceId": workspace_parameter},
                "messages": {key.clone(): {"$ref": format!("#/components/messages/{key}")}}
            }),
        );
        operations.insert(
            format!("send_{key}"),
            json!({
                "action": "send",
                "channel": {"$ref": format!("#/channels/{key}")},
                "messages": [{"$ref": format!("#/channels/{key}/messages/{key}")}]
            }),
        );
    }
    messages.insert(
        "webhookEvent".into(),
        json!({
            "name": "webhookEvent",
            "title": "A webhook delivery",
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/WebhookHeaders"},
            "payload": {"oneOf": EVENT_TYPES
                .iter()
                .map(|t| json!({"$ref": format!("#/components/schemas/{t}Event")}))
                .collect::<Vec<_>>()},
            "bindings": {"http": {"bindingVersion": "0.3.0"}}
        }),
    );
    channels.insert(
        "webhooks".into(),
        json!({
            "address": null,
            "title": "webhooks",
            "description": "POSTed to each webhook's URL (`POST /api/webhooks`): the workspace's \
                 events it asked for, one per request; a 2xx within 10 s is success, anything else \
                 is retried with backoff. Order by position, de-duplicate by webhook-id.",
            "messages": {"webhookEvent": {"$ref": "#/components/messages/webhookEvent"}}
        }),
    );
    operations.insert(
        "receiveWebhook".into(),
        json!({
            "action": "receive",
            "channel": {"$ref": "#/channels/webhooks"},
            "messages": [{"$ref": "#/channels/webhooks/messages/webhookEvent"}],
            "bindings": {"http": {"method": "POST", "bindingVersion": "0.3.0"}}
        }),
    );
    for (name, def) in defs {
        schemas.entry(name).or_insert(def);
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "deployd events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every event of deployd's log, as NATS JetStream messages (with \
                 CloudEvents 1.0 headers) and as signed webhooks. The same JSON is the data of \
                 the Server-Sent Events of GET /api/events and GET /api/deploys/{id}/events."
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages}
    })
}
