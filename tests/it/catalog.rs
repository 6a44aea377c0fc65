use serde_json::json;

use crate::helpers::*;

async fn an_import_records_the_good_lines_and_counts_the_bad_ones() {
    let app = TestApp::spawn().await;
    let entity = format!("app_{}", ulid::Ulid::generate());
    let version = format!("ver_{}", ulid::Ulid::generate());
    let build = format!("bld_{}", ulid::Ulid::generate());
    let text = format!(
        "{}\nnot json\n\n{}\n{}\n",
        entity_doc(WS, &entity, Some(&version)),
        json!({"type": "entity.upserted", "eventId": new_event_id()}),
        build_succeeded_doc(WS, &entity, &version, &build, "/srv/site"),
    );
    let feed = deployd::catalog::CatalogFeed::new(
        std::sync::Arc::new(deployd::store::commands::Commands::new(app.db.clone())),
        app.artifact_roots(),
    );
    let mut errors = Vec::new();
    let report = deployd::catalog::import(&feed, text.as_bytes(), &mut errors)
        .await
        .unwrap();
    assert_eq!(report.recorded, 2);
    assert_eq!(report.already_recorded, 0);
    assert_eq!(report.rejected, 2);
    let errors = String::from_utf8(errors).unwrap();
    assert!(errors.contains("line 2: not a JSON document"), "{errors}");
    assert!(errors.contains("line 4:"), "{errors}");
    // Visible at once: import returns only after the read model shows it.
    let builds: i64 = deployd::on_db!(&app.db, pool => sqlx::query_scalar(
        "SELECT count(*) FROM builds WHERE id = $1",
    )
    .bind(&build)
    .fetch_one(pool)
    .await
    .unwrap());
    assert_eq!(builds, 1);

    // The same documents again write nothing (idempotent by eventId).
    // The same documents again write nothing (idempotent by eventId), and
    // the report says they were already recorded.
    let before = count(&app.db, "SELECT count(*) FROM events").await;
    let again = deployd::catalog::import(&feed, text.as_bytes(), std::io::sink())
        .await
        .unwrap();
    let after = count(&app.db, "SELECT count(*) FROM events").await;
    assert_eq!(before, after);
    assert_eq!(
        (again.recorded, again.already_recorded, again.rejected),
        (0, 2, 2)
    );
    assert_eq!(
        again.to_string(),
        "0 documents recorded, 2 already recorded, 2 rejected"
    );
    app.stop().await;
}

async fn a_build_cannot_claim_an_entity_of_another_workspace() {
    let app = TestApp::spawn().await;
    let theirs = app.seed_app(OTHER_WS).await;
    let build = format!("bld_{}", ulid::Ulid::generate());
    let report = app
        .import(&[build_succeeded_doc(
            WS,
            &theirs.app,
            &theirs.version,
            &build,
            "/srv/x",
        )])
        .await;
    assert_eq!(report.rejected, 1);
    app.stop().await;
}

/// NATS only: the in-process bus takes no catalog documents.
#[tokio::test]
async fn catalog_documents_published_on_nats_reach_the_read_model() {
    let app = TestApp::spawn().await;
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let entity = format!("app_{}", ulid::Ulid::generate());
    let subject = format!("{}.catalog.{WS}.entity", app.prefix);
    // A bad document first: it is dropped, and does not block the good one.
    js.publish(subject.clone(), "{\"type\":\"bogus\"}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish(subject, entity_doc(WS, &entity, None).to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let db = app.db.clone();
    eventually(|| {
        let (db, entity) = (db.clone(), entity.clone());
        async move {
            deployd::on_db!(&db, pool => sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM entities WHERE id = $1",
            )
            .bind(&entity)
            .fetch_one(pool)
            .await
            .unwrap())
                == 1
        }
    })
    .await;
    app.stop().await;
}

crate::backend_tests!(
    an_import_records_the_good_lines_and_counts_the_bad_ones,
    a_build_cannot_claim_an_entity_of_another_workspace,
);
