//! Parsing and validation: every rejection's pointer and message.

use super::*;
use crate::read_model::list::order::resolve;

fn raw_filter(filter: &str) -> RawListParams {
    RawListParams {
        filter: Some(filter.to_owned()),
        ..Default::default()
    }
}

fn errors(raw: RawListParams) -> Vec<(String, String)> {
    match parse_list_params(&raw) {
        Ok(_) => panic!("accepted {raw:?}"),
        Err(e) => e.into_iter().map(|e| (e.pointer, e.message)).collect(),
    }
}

/// The one error of a filter: its pointer, and a part of its message.
fn filter_error(filter: &str) -> (String, String) {
    let mut e = errors(raw_filter(filter));
    assert_eq!(e.len(), 1, "{e:?}");
    e.remove(0)
}

fn assert_filter_error(filter: &str, pointer: &str, message: &str) {
    let (p, m) = filter_error(filter);
    assert_eq!(p, pointer, "{m}");
    assert!(m.contains(message), "{m:?} does not contain {message:?}");
}

#[test]
fn limit_defaults_to_100_and_must_be_1_to_100() {
    let req = parse_list_params(&RawListParams::default()).unwrap();
    assert_eq!(req.limit(), 100);
    for bad in ["0", "101", "-1", "ten", ""] {
        let raw = RawListParams {
            limit: Some(bad.into()),
            ..Default::default()
        };
        assert_eq!(
            errors(raw),
            vec![("limit".into(), "expected an integer from 1 to 100".into())]
        );
    }
    let raw = RawListParams {
        limit: Some("1".into()),
        ..Default::default()
    };
    assert_eq!(parse_list_params(&raw).unwrap().limit(), 1);
}

#[test]
fn after_with_before_is_refused() {
    let raw = RawListParams {
        after: Some("x".into()),
        before: Some("y".into()),
        ..Default::default()
    };
    assert_eq!(errors(raw)[0].0, "before");
}

#[test]
fn ids_are_deploy_ids_at_most_100_and_name_the_bad_one() {
    let good = "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M";
    let raw = RawListParams {
        ids: Some(format!(
            "{good},{good},{good},app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M"
        )),
        ..Default::default()
    };
    let e = errors(raw);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "ids/3");
    assert!(e[0].1.contains("dep_"), "{}", e[0].1);

    let raw = RawListParams {
        ids: Some(vec![good; 101].join(",")),
        ..Default::default()
    };
    assert_eq!(
        errors(raw),
        vec![("ids".into(), "has 101 ids; at most 100 are allowed".into())]
    );

    let raw = RawListParams {
        ids: Some("dep_01jdq2v7c8x3zj8q6y0w6h4k5m".into()),
        ..Default::default()
    };
    assert!(parse_list_params(&raw).is_ok());
}

#[test]
fn shorthands_are_validated_and_all_errors_come_together() {
    let raw = RawListParams {
        workspace_id: Some("nope".into()),
        entity_id: Some("ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".into()),
        build_id: Some("bld_x".into()),
        status: Some("done".into()),
        trigger: Some("cron".into()),
        created_by: Some(String::new()),
        limit: Some("0".into()),
        ..Default::default()
    };
    let pointers: Vec<String> = errors(raw).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        pointers,
        [
            "limit",
            "workspace_id",
            "entity_id",
            "build_id",
            "status",
            "trigger",
            "created_by"
        ]
    );
    let raw = RawListParams {
        status: Some("done".into()),
        ..Default::default()
    };
    assert!(errors(raw)[0].1.contains("pending, running"));

    let raw = RawListParams {
        workspace_id: Some("ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".into()),
        entity_id: Some("fn_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".into()),
        build_id: Some("bld_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".into()),
        status: Some("failed".into()),
        trigger: Some("rollback".into()),
        created_by: Some("alice".into()),
        ..Default::default()
    };
    assert!(parse_list_params(&raw).is_ok());
}

#[test]
fn a_value_of_the_wrong_type_names_its_path() {
    assert_filter_error(
        r#"{"or": [{"status": {"eq": "failed"}}, {"sequenceNumber": {"gt": "3"}}]}"#,
        "filter/or/1/sequenceNumber/gt",
        "expected an integer",
    );
    assert_filter_error(
        r#"{"sequenceNumber": {"in": [1, 2.5]}}"#,
        "filter/sequenceNumber/in/1",
        "expected an integer",
    );
    assert_filter_error(
        r#"{"status": {"eq": "done"}}"#,
        "filter/status/eq",
        "expected one of pending, running, completed, failed, cancelled",
    );
    assert_filter_error(
        r#"{"createdAt": {"gt": "2026-01-01T00:00:00"}}"#,
        "filter/createdAt/gt",
        "expected an RFC 3339 timestamp with an offset",
    );
    assert_filter_error(
        r#"{"error": {"eq": null}}"#,
        "filter/error/eq",
        "use {\"null\": true} to match nulls",
    );
    assert_filter_error(
        r#"{"error": {"null": "yes"}}"#,
        "filter/error/null",
        "expected true or false",
    );
    assert_filter_error(
        r#"{"error": "x"}"#,
        "filter/error",
        "expected an object of comparators",
    );
    assert_filter_error(r#"{"and": {}}"#, "filter/and", "expected an array");
    assert_filter_error(r#"{"not": []}"#, "filter/not", "expected a filter object");
    assert_filter_error(
        r#"{"entity": {"autoDeploy": {"eq": 1}}}"#,
        "filter/entity/autoDeploy/eq",
        "expected true or false",
    );
    assert_filter_error(
        r#"{"build": {"status": {"in": ["ok"]}}}"#,
        "filter/build/status/in/0",
        "expected one of succeeded, failed",
    );
    assert_filter_error(
        r#"{"steps": {"every": {"status": {"eq": "done"}}}}"#,
        "filter/steps/every/status/eq",
        "discarded, skipped",
    );
    assert_filter_error(
        r#"{"metadata": {"contains": [1]}}"#,
        "filter/metadata/contains",
        "expected a JSON object",
    );
}

#[test]
fn unknown_fields_and_operators_are_named() {
    assert_filter_error(
        r#"{"colour": {"eq": "red"}}"#,
        "filter/colour",
        "unknown field \"colour\"",
    );
    assert_filter_error(
        r#"{"and": [{"error": {"like": "x%"}}]}"#,
        "filter/and/0/error/like",
        "unknown operator \"like\"",
    );
    assert_filter_error(
        r#"{"sequenceNumber": {"contains": "1"}}"#,
        "filter/sequenceNumber/contains",
        "unknown operator \"contains\"",
    );
    assert_filter_error(
        r#"{"build": {"kind": {"eq": "app"}}}"#,
        "filter/build/kind",
        "unknown field",
    );
    assert_filter_error(
        r#"{"steps": {"all": {}}}"#,
        "filter/steps/all",
        "expected one of some, every, none",
    );
    assert_filter_error(
        r#"{"metadata": {"eq": {}}}"#,
        "filter/metadata/eq",
        "contains, hasKey",
    );
    // relations only at the deploy level
    assert_filter_error(
        r#"{"build": {"entity": {}}}"#,
        "filter/build/entity",
        "unknown field",
    );
    // pointer segments are escaped as in JSON Pointer
    assert_filter_error(r#"{"a/b~": {}}"#, "filter/a~1b~0", "unknown field");
}

#[test]
fn limits_on_size_depth_comparisons_and_lists() {
    let (p, m) = filter_error(&format!(r#"{{"error": {{"eq": "{}"}}}}"#, "x".repeat(8200)));
    assert_eq!(
        (p.as_str(), m.as_str()),
        ("filter", "is longer than 8192 bytes")
    );

    // depth 8 is fine, depth 9 is not
    let nest = |levels: usize| {
        let mut f = r#"{"error": {"null": true}}"#.to_owned();
        for _ in 1..levels {
            f = format!(r#"{{"not": {f}}}"#);
        }
        f
    };
    assert!(parse_list_params(&raw_filter(&nest(8))).is_ok());
    let (p, m) = filter_error(&nest(9));
    assert_eq!(p, format!("filter{}", "/not".repeat(8)));
    assert_eq!(m, "nests deeper than 8 levels");
    // relations count as a level
    let (p, _) = filter_error(
        r#"{"and":[{"and":[{"and":[{"and":[{"and":[{"and":[{"and":[{"build":{"id":{"eq":"x"}}}]}]}]}]}]}]}]}"#,
    );
    assert_eq!(p, "filter/and/0/and/0/and/0/and/0/and/0/and/0/and/0/build");

    let many = |n: usize| {
        let parts: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"sequenceNumber": {{"eq": {i}}}}}"#))
            .collect();
        format!(r#"{{"or": [{}]}}"#, parts.join(","))
    };
    assert!(parse_list_params(&raw_filter(&many(50))).is_ok());
    assert_filter_error(&many(51), "filter", "has 51 comparisons; at most 50");

    let list = |n: usize| {
        let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        format!(r#"{{"sequenceNumber": {{"nin": [{}]}}}}"#, values.join(","))
    };
    assert!(parse_list_params(&raw_filter(&list(100))).is_ok());
    assert_filter_error(
        &list(101),
        "filter/sequenceNumber/nin",
        "has 101 values; at most 100",
    );

    assert_filter_error("{", "filter", "is not valid JSON");
}

#[test]
fn every_field_and_operator_parses() {
    let filter = r#"{
        "and": [{"id": {"startsWith": "dep_"}}], "or": [{"error": {"null": true}}],
        "not": {"status": {"in": ["failed", "cancelled"]}},
        "workspaceId": {"eq": "w"}, "entityId": {"neq": "e"}, "sequenceNumber": {"gte": 1, "lte": 9},
        "buildId": {"nin": []}, "trigger": {"eq": "auto"}, "sourceEventId": {"endsWith": "x"},
        "productionUrl": {"contains": "%_\\"}, "previewUrl": {"notContains": "a"},
        "error": {"containsIgnoreCase": "Boom"}, "metadata": {"contains": {"a": [1]}, "hasKey": "k"},
        "createdBy": {"lt": "m"}, "startedAt": {"gt": "2026-01-01T00:00:00.123456+02:00"},
        "completedAt": {"null": false}, "createdAt": {"lte": "2026-01-01T00:00:00Z"},
        "build": {"id": {"eq": "b"}, "status": {"eq": "succeeded"}, "branch": {"eq": "main"},
                  "commitSha": {"startsWith": "ab"}, "versionId": {"eq": "v"}, "entityId": {"eq": "e"},
                  "createdAt": {"gt": "2026-01-01T00:00:00Z"}, "error": {"null": true},
                  "artifactDir": {"null": false}, "or": [{"not": {"branch": {"eq": "x"}}}]},
        "entity": {"id": {"eq": "e"}, "kind": {"eq": "function"}, "name": {"gt": "a"},
                   "defaultVersionId": {"null": true}, "autoDeploy": {"eq": false},
                   "createdAt": {"lt": "2026-01-01T00:00:00Z"}, "updatedAt": {"gte": "2026-01-01T00:00:00Z"}},
        "steps": {"some": {"name": {"eq": "build"}}, "every": {"status": {"neq": "failed"}},
                  "none": {"error": {"null": false}, "startedAt": {"lt": "2026-01-01T00:00:00Z"},
                           "completedAt": {"gt": "2026-01-01T00:00:00Z"}}}
    }"#;
    let req = parse_list_params(&raw_filter(filter)).unwrap();
    let f = req.filter();
    assert_eq!(
        f.started_at
            .as_ref()
            .and_then(|c| c.gt)
            .map(|t| crate::domain::time::format(&t)),
        Some("2025-12-31T22:00:00.123456Z".to_owned())
    );
    assert!(f.build.is_some() && f.entity.is_some() && f.steps.is_some());
}

#[test]
fn like_patterns_escape_their_wildcards() {
    assert_eq!(lower::escape_like(r"50%_a\b"), r"50\%\_a\\b");
}

#[test]
fn order_by_is_validated() {
    let order = |s: &str| {
        errors(RawListParams {
            order_by: Some(s.to_owned()),
            ..Default::default()
        })
    };
    let e = order(r#"[{"createdAt": "down"}]"#);
    assert_eq!(e[0].0, "orderBy/0/createdAt");
    assert!(e[0].1.contains("unknown direction \"down\""), "{}", e[0].1);
    let e = order(r#"[{"createdAt": "desc"}, {"metadata": "asc"}]"#);
    assert_eq!(e[0].0, "orderBy/1/metadata");
    assert!(e[0].1.contains("unknown or unsortable field \"metadata\""));
    let e = order(r#"[{"createdAt": "desc", "id": "asc"}]"#);
    assert_eq!(e[0].0, "orderBy/0");
    let e = order(r#"[{"id": "asc"}, {"id": "desc"}]"#);
    assert_eq!(e[0], ("orderBy/1/id".into(), "id appears twice".into()));
    let six = r#"[{"id":"asc"},{"error":"asc"},{"status":"asc"},{"trigger":"asc"},{"createdAt":"asc"},{"startedAt":"asc"}]"#;
    assert_eq!(
        order(six)[0],
        ("orderBy".into(), "expected 1 to 5 keys, got 6".into())
    );
    assert_eq!(order(r#"{"id":"asc"}"#)[0].0, "orderBy");
    assert_eq!(order("[]")[0].0, "orderBy");
}

#[test]
fn id_breaks_ties_in_the_direction_of_the_last_key() {
    let keys = |order: &[DeployOrderBy]| -> Vec<(SortField, bool, bool)> {
        resolve(order)
            .into_iter()
            .map(|k| (k.field, k.descending, k.nulls_first))
            .collect()
    };
    let req = parse_list_params(&RawListParams::default()).unwrap();
    assert_eq!(req.order_by(), [DeployOrderBy::CreatedAt(Direction::Desc)]);
    assert_eq!(
        keys(req.order_by()),
        [
            (SortField::CreatedAt, true, true),
            (SortField::Id, true, true)
        ]
    );
    assert_eq!(
        keys(&[
            DeployOrderBy::CreatedAt(Direction::DescNullsLast),
            DeployOrderBy::Error(Direction::Asc)
        ]),
        [
            (SortField::CreatedAt, true, false),
            (SortField::Error, false, false),
            (SortField::Id, false, false)
        ]
    );
    assert_eq!(
        keys(&[
            DeployOrderBy::Id(Direction::Asc),
            DeployOrderBy::Error(Direction::AscNullsFirst)
        ]),
        [
            (SortField::Id, false, false),
            (SortField::Error, false, true)
        ]
    );
}

#[test]
fn cursors_are_bound_to_the_canonical_query() {
    let binding = |raw: RawListParams| parse_list_params(&raw).unwrap().binding;
    let a = binding(raw_filter(
        r#"{"error": {"eq": "x"}, "status": {"eq": "failed"}}"#,
    ));
    let same = binding(raw_filter(
        r#"{"status": {"eq": "failed"}, "error": {"eq": "x"}}"#,
    ));
    let other = binding(raw_filter(
        r#"{"error": {"eq": "y"}, "status": {"eq": "failed"}}"#,
    ));
    assert_eq!(a, same);
    assert_ne!(a, other);
    let with_limit = binding(RawListParams {
        limit: Some("5".into()),
        ..raw_filter(r#"{"error": {"eq": "x"}, "status": {"eq": "failed"}}"#)
    });
    assert_eq!(a, with_limit, "the page size may change between pages");
    let ordered = binding(RawListParams {
        order_by: Some(r#"[{"createdAt": "asc"}]"#.into()),
        ..raw_filter(r#"{"error": {"eq": "x"}, "status": {"eq": "failed"}}"#)
    });
    assert_ne!(a, ordered);
    let shorthand = binding(RawListParams {
        trigger: Some("auto".into()),
        ..raw_filter(r#"{"error": {"eq": "x"}, "status": {"eq": "failed"}}"#)
    });
    assert_ne!(a, shorthand);
}

#[test]
fn schemas_are_named_and_describe_the_filter() {
    let schemas = schemas();
    let names: Vec<&str> = schemas.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["DeployFilter", "DeployOrderBy"]);
    let filter = serde_json::to_string(&schemas[0].1).unwrap();
    for needle in [
        "sequenceNumber",
        "containsIgnoreCase",
        "hasKey",
        "every",
        "artifactDir",
        "autoDeploy",
    ] {
        assert!(filter.contains(needle), "{needle} missing");
    }
    let order = serde_json::to_string(&schemas[1].1).unwrap();
    assert!(order.contains("descNullsLast") && order.contains("createdAt"));
}

#[test]
fn schemas_have_no_null_alternatives() {
    for (name, schema) in schemas() {
        let text = serde_json::to_string(&schema).unwrap();
        assert!(
            !text.contains(r#""null"}"#) && !text.contains(r#","null"]"#),
            "{name}: {text}"
        );
    }
}

#[test]
fn cursor_for_encodes_the_rows_sort_keys_under_the_requests_binding() {
    let row = DeployRow {
        id: "dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
        workspace_id: "ws_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
        entity_id: "app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
        sequence_number: 7,
        build_id: "bld_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M".parse().unwrap(),
        status: String::from("running").try_into().unwrap(),
        trigger: String::from("auto").try_into().unwrap(),
        source_event_id: None,
        production_url: None,
        preview_url: None,
        error: None,
        metadata: serde_json::json!({}),
        created_by: "alice".into(),
        started_at: None,
        completed_at: None,
        created_at: chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        target: String::from("production").try_into().unwrap(),
        live: false,
        rollback_of: None,
        promoted_from: None,
        superseded_by: None,
    };
    let raw = RawListParams {
        order_by: Some(r#"[{"completedAt": "descNullsLast"}, {"sequenceNumber": "asc"}]"#.into()),
        ..Default::default()
    };
    let req = parse_list_params(&raw).unwrap();
    let token = req.cursor_for(&row, b"k");
    assert_eq!(
        cursor::decode(b"k", &req.binding, &req.keys, &token),
        Ok(vec![
            order::KeyValue::Null,
            order::KeyValue::Int(7),
            order::KeyValue::Text(row.id.to_string()),
        ])
    );
    // bound to the request: another order refuses it
    let other = parse_list_params(&RawListParams::default()).unwrap();
    assert!(cursor::decode(b"k", &other.binding, &other.keys, &token).is_err());
}
