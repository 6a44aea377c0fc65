//! Builds uploaded through the API into the artifact store: create, send
//! the missing blobs, finalize, deploy, and the files served from the store
//! with ETag/304, Range/206/416 and Last-Modified; every bad input refused
//! with problem+json and nothing stored; workspaces kept apart.

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::*;

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `files` as the body of `POST /api/builds` lists them.
fn listing(files: &[(&str, &[u8])]) -> Value {
    Value::Array(
        files
            .iter()
            .map(|(path, content)| json!({"path": path, "sha256": sha(content), "size": content.len()}))
            .collect(),
    )
}

async fn start_build(app: &TestApp, token: &str, entity: &str, files: Value) -> reqwest::Response {
    app.post(
        "/api/builds",
        token,
        json!({"entityId": entity, "branch": "main", "commitSha": "abc", "files": files}),
    )
    .await
}

async fn put_blob(app: &TestApp, token: &str, sha256: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/blobs/{sha256}")))
        .bearer_auth(token)
        .body(bytes)
        .send()
        .await
        .unwrap()
}

async fn finalize(app: &TestApp, token: &str, build: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/builds/{build}/finalize")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Uploads `files` as a build of `entity` (only the missing blobs) and
/// finalizes it; returns (build id, blobs sent, finalize answer).
async fn upload(app: &TestApp, entity: &str, files: &[(&str, &[u8])]) -> (String, usize, Value) {
    let response = start_build(app, &app.token, entity, listing(files)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/builds/{id}"));
    assert_eq!(created["status"], "uploading");
    let missing: Vec<String> = serde_json::from_value(created["missing"].clone()).unwrap();
    for sha256 in &missing {
        let content = files.iter().find(|(_, c)| sha(c) == *sha256).unwrap().1;
        let r = put_blob(app, &app.token, sha256, content.to_vec()).await;
        assert_eq!(r.status(), StatusCode::OK);
        let stored: Value = r.json().await.unwrap();
        assert_eq!(stored["size"], content.len());
    }
    let r = finalize(app, &app.token, &id).await;
    assert_eq!(r.status(), StatusCode::OK);
    (id, missing.len(), r.json().await.unwrap())
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn an_uploaded_build_deploys_and_its_files_are_served_from_the_store() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let files: Vec<(&str, &[u8])> = vec![
        ("index.html", b"<h1>uploaded</h1>"),
        ("./assets//app.js", &big),
        ("copy.html", b"<h1>uploaded</h1>"),
        ("_redirects", b"/*  /index.html  200\n"),
    ];
    let (build, sent, finalized) = upload(&app, &seeded.app, &files).await;
    // index.html and copy.html share one blob.
    assert_eq!(sent, 3);
    assert_eq!(finalized["id"], build.as_str());
    assert_eq!(finalized["status"], "succeeded");
    assert_eq!(finalized["versionId"], seeded.version.as_str());
    assert_eq!(finalized["branch"], "main");
    assert_eq!(finalized["autoDeployId"], Value::Null);
    // The builds API shows it as any build.
    let shown: Value = app
        .get(&format!("/api/builds/{build}"), &app.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], "succeeded");
    // Finalizing again answers the same build.
    let again = finalize(&app, &app.token, &build).await;
    assert_eq!(again.status(), StatusCode::OK);

    let deploy = app.create(&build).await["id"].as_str().unwrap().to_string();
    let done = app.wait_status(&deploy, "completed").await;
    let preview = done["previewUrl"].as_str().unwrap().to_string();
    let page = app.client.get(&preview).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(!header(&page, "last-modified").is_empty());
    let etag = header(&page, "etag");
    assert_eq!(etag, format!("\"{}\"", sha(b"<h1>uploaded</h1>")));
    assert_eq!(page.text().await.unwrap(), "<h1>uploaded</h1>");
    // The normalised path, the whole file.
    let js = app
        .client
        .get(format!("{preview}assets/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(header(&js, "accept-ranges"), "bytes");
    assert!(header(&js, "content-type").starts_with("text/javascript"));
    assert_eq!(js.bytes().await.unwrap().as_ref(), big.as_slice());
    // The SPA rule of the uploaded _redirects.
    let deep = app
        .client
        .get(format!("{preview}settings/profile"))
        .send()
        .await
        .unwrap();
    assert_eq!(deep.text().await.unwrap(), "<h1>uploaded</h1>");
    // ETag: 304.
    let cached = app
        .client
        .get(&preview)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert!(cached.bytes().await.unwrap().is_empty());
    // Range: 206 with the bytes asked for, never compressed.
    let part = app
        .client
        .get(format!("{preview}assets/app.js"))
        .header("Range", "bytes=1000-1999")
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&part, "content-range"), "bytes 1000-1999/200000");
    assert_eq!(header(&part, "content-encoding"), "");
    assert_eq!(part.bytes().await.unwrap().as_ref(), &big[1000..2000]);
    let tail = app
        .client
        .get(format!("{preview}assets/app.js"))
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &big[big.len() - 10..]);
    // If-Range with another tag: the whole file.
    let changed = app
        .client
        .get(format!("{preview}assets/app.js"))
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(changed.bytes().await.unwrap().len(), big.len());
    // Past the end: 416 naming the size.
    let past = app
        .client
        .get(format!("{preview}assets/app.js"))
        .header("Range", "bytes=200000-")
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&past, "content-range"), "bytes */200000");

    // The same directory again: nothing to send.
    let (second, sent, _) = upload(&app, &seeded.app, &files).await;
    assert_ne!(second, build);
    assert_eq!(sent, 0);
    app.stop().await;
}

async fn a_finalized_upload_auto_deploys_like_an_upstream_build() {
    let app = TestApp::spawn_with_worker().await;
    let entity = format!("app_{}", ulid::Ulid::generate());
    let version = format!("ver_{}", ulid::Ulid::generate());
    let mut doc = entity_doc(WS, &entity, Some(&version));
    doc["entity"]["autoDeploy"] = json!(true);
    assert_eq!(app.import(&[doc]).await.rejected, 0);
    let (build, _, finalized) = upload(&app, &entity, &[("index.html", b"auto")]).await;
    let deploy = finalized["autoDeployId"].as_str().unwrap().to_string();
    let done = app.wait_status(&deploy, "completed").await;
    assert_eq!(done["buildId"], build.as_str());
    assert_eq!(done["trigger"], "auto");
    let live = done["productionUrl"].as_str().unwrap();
    let page = app.client.get(live).send().await.unwrap();
    assert_eq!(page.text().await.unwrap(), "auto");
    // A second finalize makes no second deploy.
    let again: Value = finalize(&app, &app.token, &build)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["autoDeployId"], deploy.as_str());
    let listed: Value = app
        .client
        .get(app.url("/api/deploys"))
        .bearer_auth(&app.token)
        .query(&[("entity_id", entity.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn bad_uploads_are_refused_naming_the_entry_and_store_nothing() {
    let app = TestApp::spawn_with(Options {
        api: deployd::api::ApiSettings {
            max_blob_bytes: 1000,
            max_build_files: 5,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let seeded = app.seed_app(WS).await;
    let stored = |sha256: &str| {
        app.data_dir
            .path()
            .join("blobs/sha256")
            .join(sha256)
            .exists()
    };
    let file = |path: &str| json!({"path": path, "sha256": sha(b"x"), "size": 1});
    for (files, pointer) in [
        (json!([file("/etc/passwd")]), "body/files/0/path"),
        (
            json!([file("ok.html"), file("a/../../b")]),
            "body/files/1/path",
        ),
        (json!([file("a\u{0}b")]), "body/files/0/path"),
        (json!([file("a\\b")]), "body/files/0/path"),
        (
            json!([file("a/b.css"), file("./a//b.css")]),
            "body/files/1/path",
        ),
        (
            json!([{"path": "x", "sha256": "nothex", "size": 1}]),
            "body/files/0/sha256",
        ),
        (
            json!([{"path": "x", "sha256": sha(b"x"), "size": -1}]),
            "body/files/0/size",
        ),
        (
            json!([{"path": "x", "sha256": sha(b"x"), "size": 1, "mode": 7}]),
            "body/files/0/mode",
        ),
        (json!([]), "body/files"),
        (
            json!((0..6).map(|i| file(&format!("f{i}"))).collect::<Vec<_>>()),
            "body/files",
        ),
    ] {
        let body = problem(
            start_build(&app, &app.token, &seeded.app, files.clone()).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(
            pointers(&body).contains(&pointer.to_string()),
            "{files}: {body}"
        );
    }
    // A file over the limit: 413 naming it.
    let body = problem(
        start_build(
            &app,
            &app.token,
            &seeded.app,
            json!([{"path": "big.bin", "sha256": sha(b"x"), "size": 1001}]),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(pointers(&body), ["body/files/0/size"]);
    // Another workspace's entity: 404.
    problem(
        start_build(&app, &app.other_token, &seeded.app, listing(&[("a", b"a")])).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let content = b"<h1>right</h1>".to_vec();
    let big = vec![7u8; 1001];
    let created: Value = start_build(
        &app,
        &app.token,
        &seeded.app,
        json!([
            {"path": "index.html", "sha256": sha(&content), "size": content.len()},
        ]),
    )
    .await
    .json()
    .await
    .unwrap();
    let build = created["id"].as_str().unwrap().to_string();
    let right = sha(&content);
    assert_eq!(created["missing"], json!([right]));
    // Finalize before the blob: 422 listing it.
    let body = problem(
        finalize(&app, &app.token, &build).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["missing"], json!([right]));
    // Wrong bytes: 400, nothing stored.
    let body = problem(
        put_blob(&app, &app.token, &right, b"<h1>wrong</h1>".to_vec()).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(pointers(&body), ["body"]);
    assert!(!stored(&right));
    // Over the limit: 413, nothing stored.
    problem(
        put_blob(&app, &app.token, &right, big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(!stored(&right));
    // A blob no build of the caller lists, or another workspace's: 404.
    problem(
        put_blob(&app, &app.token, &sha(b"unlisted"), b"unlisted".to_vec()).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        put_blob(&app, &app.other_token, &right, content.clone()).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        put_blob(&app, &app.token, "not-a-hash", content.clone()).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(!stored(&right));
    // Another workspace cannot finalize (or see) the build.
    problem(
        finalize(&app, &app.other_token, &build).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        finalize(&app, &app.token, "bld_nope").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // The right bytes, twice (idempotent), then finalize.
    for _ in 0..2 {
        let r = put_blob(&app, &app.token, &right, content.clone()).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert!(stored(&right));
    assert_eq!(
        finalize(&app, &app.token, &build).await.status(),
        StatusCode::OK
    );
    // The blob is stored now, but the other workspace has not sent it: it
    // is missing for them, and they must send the bytes to use it.
    let other = app.seed_app(OTHER_WS).await;
    let theirs: Value = start_build(
        &app,
        &app.other_token,
        &other.app,
        listing(&[("i.html", &content)]),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(theirs["missing"], json!([right]));
    app.stop().await;
}

async fn deploys_made_before_the_store_keep_serving_after_an_upgrade() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let deploy = app.create(&seeded.build).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = app.wait_status(&deploy, "completed").await;
    let preview = done["previewUrl"].as_str().unwrap().to_string();
    let expected = format!("<h1>{}</h1>", seeded.build);
    // Put the deploy back the way deployd kept it before the store: the
    // manifest in the data directory, the blob under a two-letter shard.
    let data = app.data_dir.path().to_path_buf();
    let manifest = data.join(format!("blobs/deploys/{deploy}/manifest.json"));
    let legacy = data.join(format!("deploys/{deploy}/manifest.json"));
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::rename(&manifest, &legacy).unwrap();
    let hash = sha(expected.as_bytes());
    std::fs::create_dir_all(data.join("blobs").join(&hash[..2])).unwrap();
    std::fs::rename(
        data.join("blobs/sha256").join(&hash),
        data.join("blobs").join(&hash[..2]).join(&hash),
    )
    .unwrap();
    let app = app.restart().await;
    let preview = preview.replace(&preview[..preview.find("/preview").unwrap()], &app.address);
    let page = app.client.get(&preview).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.text().await.unwrap(), expected);
    app.stop().await;
}

crate::backend_tests!(
    an_uploaded_build_deploys_and_its_files_are_served_from_the_store,
    a_finalized_upload_auto_deploys_like_an_upstream_build,
    bad_uploads_are_refused_naming_the_entry_and_store_nothing,
    deploys_made_before_the_store_keep_serving_after_an_upgrade,
);
