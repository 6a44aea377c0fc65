use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

impl TestApp {
    pub async fn list(&self, token: &str, query: &[(&str, String)]) -> reqwest::Response {
        self.client
            .get(self.url("/api/deploys"))
            .bearer_auth(token)
            .query(query)
            .send()
            .await
            .unwrap()
    }

    pub async fn list_ok(&self, token: &str, query: &[(&str, String)]) -> Value {
        let response = self.list(token, query).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

async fn the_list_pages_newest_first_and_walks_back_exactly() {
    let app = TestApp::spawn().await;
    let seeded = app.seed_app(WS).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            app.create(&seeded.build).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    created.reverse(); // newest first

    let first = app.list_ok(&app.token, &[("limit", "2".into())]).await;
    assert_eq!(ids(&first), created[0..2]);
    assert_eq!(first["pageInfo"]["total"], 5);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);
    let end = first["pageInfo"]["endCursor"].as_str().unwrap().to_string();

    let second = app
        .list_ok(&app.token, &[("limit", "2".into()), ("after", end)])
        .await;
    assert_eq!(ids(&second), created[2..4]);
    assert_eq!(second["pageInfo"]["hasNextPage"], true);
    assert_eq!(second["pageInfo"]["hasPreviousPage"], true);

    let end = second["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_string();
    let third = app
        .list_ok(&app.token, &[("limit", "2".into()), ("after", end)])
        .await;
    assert_eq!(ids(&third), created[4..5]);
    assert_eq!(third["pageInfo"]["hasNextPage"], false);

    let start = third["pageInfo"]["startCursor"]
        .as_str()
        .unwrap()
        .to_string();
    let back = app
        .list_ok(&app.token, &[("limit", "2".into()), ("before", start)])
        .await;
    assert_eq!(ids(&back), created[2..4]);
    app.stop().await;
}

async fn shorthands_filter_and_order_narrow_the_list() {
    let app = TestApp::spawn().await;
    let a = app.seed_app(WS).await;
    let b = app.seed_app(WS).await;
    let a1 = app.create(&a.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b1 = app.create(&b.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a2 = app.create(&a.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.post(&format!("/api/deploys/{a2}/cancel"), &app.token, json!({}))
        .await;

    let by_entity = app
        .list_ok(&app.token, &[("entity_id", a.app.clone())])
        .await;
    assert_eq!(ids(&by_entity), vec![a2.clone(), a1.clone()]);
    let pending = app
        .list_ok(&app.token, &[("status", "pending".into())])
        .await;
    assert_eq!(ids(&pending), vec![b1.clone(), a1.clone()]);
    let filtered = app
        .list_ok(
            &app.token,
            &[
                (
                    "filter",
                    json!({"or": [{"status": {"eq": "cancelled"}}, {"entityId": {"eq": b.app}}]})
                        .to_string(),
                ),
                (
                    "orderBy",
                    json!([{"sequenceNumber": "asc"}, {"createdAt": "desc"}]).to_string(),
                ),
            ],
        )
        .await;
    assert_eq!(ids(&filtered), vec![b1.clone(), a2.clone()]);
    let steps = app
        .list_ok(
            &app.token,
            &[(
                "filter",
                json!({"steps": {"some": {"status": {"eq": "skipped"}}}}).to_string(),
            )],
        )
        .await;
    assert_eq!(ids(&steps), vec![a2.clone()]);
    let by_build = app
        .list_ok(
            &app.token,
            &[(
                "filter",
                json!({"build": {"id": {"eq": b.build}}}).to_string(),
            )],
        )
        .await;
    assert_eq!(ids(&by_build), vec![b1]);
    app.stop().await;
}

async fn bad_list_parameters_are_400s_that_name_them() {
    let app = TestApp::spawn().await;
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("limit", "0".into())], "limit"),
        (vec![("limit", "101".into())], "limit"),
        (vec![("status", "sleeping".into())], "status"),
        (
            vec![("after", "x".into()), ("before", "y".into())],
            "before",
        ),
        (vec![("after", "forged".into())], "after"),
        (vec![("filter", "{".into())], "filter"),
        (
            vec![("filter", json!({"colour": {"eq": 1}}).to_string())],
            "filter/colour",
        ),
        (
            vec![(
                "filter",
                json!({"or": [{}, {"sequenceNumber": {"gt": "x"}}]}).to_string(),
            )],
            "filter/or/1/sequenceNumber/gt",
        ),
        (
            vec![("orderBy", json!([{"createdAt": "sideways"}]).to_string())],
            "orderBy/0/createdAt",
        ),
    ];
    for (query, pointer) in cases {
        let body = problem(app.list(&app.token, &query).await, StatusCode::BAD_REQUEST).await;
        let found = pointers(&body);
        assert!(
            found
                .iter()
                .any(|p| p == pointer || p.starts_with(&format!("{pointer}/"))),
            "{query:?}: {found:?}"
        );
    }
    app.stop().await;
}

async fn nothing_of_another_workspace_is_listed_counted_or_reachable_by_ids_or_cursor() {
    let app = TestApp::spawn().await;
    let ours = app.seed_app(WS).await;
    let theirs = app.seed_app(OTHER_WS).await;
    let mine = app.create(&ours.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let response = app
        .post(
            "/api/deploys",
            &app.other_token,
            json!({"buildId": theirs.build}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let their_id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let all = app.list_ok(&app.token, &[]).await;
    assert_eq!(ids(&all), vec![mine.clone()]);
    assert_eq!(all["pageInfo"]["total"], 1);

    // ids narrows within scope; it never reaches past it.
    let by_ids = app
        .list_ok(&app.token, &[("ids", format!("{mine},{their_id}"))])
        .await;
    assert_eq!(ids(&by_ids), vec![mine.clone()]);
    let only_theirs = app.list_ok(&app.token, &[("ids", their_id.clone())]).await;
    assert_eq!(only_theirs["pageInfo"]["total"], 0);
    // Naming their workspace or their entity finds nothing.
    let named = app
        .list_ok(&app.token, &[("workspace_id", OTHER_WS.into())])
        .await;
    assert_eq!(named["pageInfo"]["total"], 0);
    let related = app
        .list_ok(
            &app.token,
            &[(
                "filter",
                json!({"build": {"id": {"eq": theirs.build}}}).to_string(),
            )],
        )
        .await;
    assert_eq!(related["pageInfo"]["total"], 0);

    // A cursor is bound to the caller's workspaces: theirs is refused here.
    let their_page = app
        .list_ok(&app.other_token, &[("limit", "1".into())])
        .await;
    let cursor = their_page["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_string();
    let reused = app
        .list(&app.token, &[("limit", "1".into()), ("after", cursor)])
        .await;
    assert_eq!(
        pointers(&problem(reused, StatusCode::BAD_REQUEST).await),
        vec!["after"]
    );
    app.stop().await;
}

crate::backend_tests!(
    the_list_pages_newest_first_and_walks_back_exactly,
    shorthands_filter_and_order_narrow_the_list,
    bad_list_parameters_are_400s_that_name_them,
    nothing_of_another_workspace_is_listed_counted_or_reachable_by_ids_or_cursor,
);
