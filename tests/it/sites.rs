//! Serving completed deploys as Cloudflare Pages and Netlify do: directory
//! indexes, the build's own 404.html, the single-page-app fallback of a
//! `_redirects` rule, caching fit for content-hashed assets, conditional
//! requests, and compression. The example site (`examples/site`) is the
//! build.

use std::io::Read;
use std::path::Path;

use reqwest::StatusCode;

use crate::helpers::*;

/// The files of `examples/site`, as (relative path, content).
fn example_site() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/site");
    walk(&root, &root)
}

fn walk(root: &Path, dir: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(root, &path));
        } else {
            let key = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            files.push((key, std::fs::read_to_string(&path).unwrap()));
        }
    }
    files
}

async fn deploy(app: &TestApp, seeded: &Seeded, files: &[(String, String)]) -> serde_json::Value {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let build = app.seed_build(seeded, &files).await;
    let id = app.create(&build).await["id"].as_str().unwrap().to_string();
    app.wait_status(&id, "completed").await
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn a_site_gets_its_404_page_long_lived_hashed_assets_304s_and_gzip() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let site = example_site();
    let done = deploy(&app, &seeded, &site).await;
    let live = done["productionUrl"].as_str().unwrap().to_string();
    let preview = done["previewUrl"].as_str().unwrap().to_string();
    let file = |name: &str| site.iter().find(|(k, _)| k == name).unwrap().1.clone();

    // The page: revalidated on the live URL, briefly cached on the preview.
    let page = app.client.get(&live).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let etag = header(&page, "etag");
    assert!(etag.starts_with('"'), "{etag:?}");
    assert_eq!(page.text().await.unwrap(), file("index.html"));
    let page = app.client.get(&preview).send().await.unwrap();
    assert_eq!(header(&page, "cache-control"), "public, max-age=300");

    // A content-hashed asset is cached for good, on both URLs.
    for base in [&live, &preview] {
        let css = app
            .client
            .get(format!("{base}assets/site.3f9a1c7e.css"))
            .send()
            .await
            .unwrap();
        assert_eq!(css.status(), StatusCode::OK);
        assert_eq!(
            header(&css, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert!(header(&css, "content-type").starts_with("text/css"));
    }

    // The same ETag again: 304, no body.
    let again = app
        .client
        .get(&live)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, "etag"), etag);
    assert!(again.bytes().await.unwrap().is_empty());

    // A missing path: the build's own 404.html, with status 404.
    let missing = app
        .client
        .get(format!("{live}no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(header(&missing, "content-type").starts_with("text/html"));
    assert_eq!(header(&missing, "cache-control"), "no-cache");
    assert_eq!(missing.text().await.unwrap(), file("404.html"));

    // A directory path serves its index.html.
    let about = app
        .client
        .get(format!("{live}about/"))
        .send()
        .await
        .unwrap();
    assert_eq!(about.text().await.unwrap(), file("about/index.html"));

    // gzip, for a client that accepts it; the bytes decompress to the file.
    let gzipped = app
        .client
        .get(&live)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), StatusCode::OK);
    assert_eq!(header(&gzipped, "content-encoding"), "gzip");
    let bytes = gzipped.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, file("index.html"));
    app.stop().await;
}

async fn a_redirects_spa_rule_serves_index_html_for_every_unknown_path() {
    let app = TestApp::spawn_with_worker().await;
    let seeded = app.seed_app(WS).await;
    let files = [
        ("index.html", "<div id=app></div>"),
        ("app.js", "render()"),
        ("_redirects", "/*  /index.html  200\n"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let done = deploy(&app, &seeded, &files).await;
    let live = done["productionUrl"].as_str().unwrap();
    for route in ["settings/profile", "deep/link/", "_redirects"] {
        let page = app
            .client
            .get(format!("{live}{route}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{route}");
        assert_eq!(page.text().await.unwrap(), "<div id=app></div>", "{route}");
    }
    let js = app
        .client
        .get(format!("{live}app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.text().await.unwrap(), "render()");

    // Without the rule (and without a 404.html): a plain 404.
    let plain = [("index.html", "x")].map(|(k, v)| (k.to_string(), v.to_string()));
    let done = deploy(&app, &seeded, &plain).await;
    let missing = app
        .client
        .get(format!("{}settings", done["previewUrl"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

crate::backend_tests!(
    a_site_gets_its_404_page_long_lived_hashed_assets_304s_and_gzip,
    a_redirects_spa_rule_serves_index_html_for_every_unknown_path,
);
