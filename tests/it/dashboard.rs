//! The web dashboard at `/ui/` (`spec/dashboard.md`): how it is served, and
//! what a person does with it, driven in Debian's headless Chromium through
//! chromedriver (WebDriver, `fantoccini`). Each view is kept as a screenshot
//! under `<target>/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::*;

const CHROMIUM: &str = "/usr/bin/chromium";

// ---------- served as a web page should be ----------

async fn every_dashboard_route_answers_the_app_shell_and_the_root_redirects_there() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = client.get(app.url("/")).send().await.unwrap();
    assert!(root.status().is_redirection(), "{}", root.status());
    assert_eq!(root.headers()["location"], "/ui/");
    for path in [
        "/ui/",
        "/ui/deploys",
        "/ui/deploys/dep_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
        "/ui/apps",
        "/ui/apps/app_01JDQ2V7C8X3ZJ8Q6Y0W6H4K5M",
        "/ui/webhooks",
    ] {
        let page = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert_eq!(page.headers()["cache-control"], "no-cache", "{path}");
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        let html = page.text().await.unwrap();
        for asset in deployd::api::ui::asset_paths() {
            assert!(html.contains(&asset), "{path} links {asset}");
        }
    }
    app.stop().await;
}

async fn assets_have_content_hashed_names_a_year_of_caching_an_etag_and_gzip() {
    let app = TestApp::spawn().await;
    let mut total = 0;
    for path in deployd::api::ui::asset_paths() {
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(name.split('.').count(), 3, "{name} is stem.hash.ext");
        let plain = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(
            plain.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let etag = plain.headers()["etag"].clone();
        let size = plain.bytes().await.unwrap().len();
        let again = app
            .client
            .get(app.url(&path))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let gzip = app
            .client
            .get(app.url(&path))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        if size > 1024 {
            assert_eq!(gzip.headers()["content-encoding"], "gzip", "{path}");
        }
        let compressed = gzip.bytes().await.unwrap().len();
        eprintln!("dashboard asset {path}: {size} bytes, {compressed} gzip");
        total += compressed;
    }
    eprintln!("dashboard page weight (own code, gzip): {total} bytes");
    assert!(
        total < 100 * 1024,
        "the page's own code is {total} bytes gzip"
    );
    let unknown = app.get("/ui/assets/app.0000.js", &app.token).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

// ---------- in a real browser ----------

/// Browser tests run one at a time: Chromium is heavy on a 2-core machine.
static ONE_BROWSER: LazyLock<tokio::sync::Mutex<()>> =
    LazyLock::new(|| tokio::sync::Mutex::new(()));

struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn chromedriver_present() -> bool {
    Command::new("chromedriver")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Browser {
    /// Headless Chromium at 1440×900, or `None` (said on stderr) where it
    /// is not installed. Under `CI=true` a missing browser fails the test.
    async fn start() -> Option<Browser> {
        if !std::path::Path::new(CHROMIUM).exists() || !chromedriver_present() {
            let why = "Chromium or chromedriver is not installed (Debian packages `chromium` and \
                       `chromium-driver`; scripts/services installs them)";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("the dashboard's browser tests cannot run: {why}");
            }
            eprintln!("SKIPPED: the dashboard's browser tests did not run: {why}");
            return None;
        }
        let turn = ONE_BROWSER.lock().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1440,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver did not start Chromium: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            _profile: profile,
            _turn: turn,
        })
    }

    async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// Evaluates a JavaScript expression in the page.
    async fn eval(&self, expression: &str) -> Value {
        self.client
            .execute(&format!("return ({expression});"), vec![])
            .await
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// Waits (30 s at most) until `expression` is true in the page.
    async fn until(&self, what: &str, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // An element not drawn yet is "not yet", not a failure.
            let guarded = format!("(() => {{ try {{ return ({expression}) === true; }} catch (_) {{ return false; }} }})()");
            if self.eval(&guarded).await == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let text = self.eval("document.body.innerText").await;
                panic!("{what} did not happen within 30 s; the page reads:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
    }

    /// Keeps a PNG of the page under `<target>/screenshots/<name>.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let suffix = match backend() {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        };
        let path = dir.join(format!("{name}-{suffix}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    async fn sign_in(&self, app: &TestApp) {
        self.client.goto(&app.url("/")).await.unwrap();
        let field = self.css("#token").await;
        field.send_keys(&app.token).await.unwrap();
        field.send_keys("\u{E007}").await.unwrap(); // Enter
        self.css("#deploys").await;
    }

    /// Every request the page made (documents, scripts, styles, fetches)
    /// went to `origin`.
    async fn assert_no_request_left(&self, origin: &str) {
        let urls = self
            .eval(
                "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).map(e => e.name)",
            )
            .await;
        let urls = urls.as_array().unwrap();
        assert!(!urls.is_empty());
        for url in urls {
            let url = url.as_str().unwrap();
            assert!(
                url.starts_with(&format!("{origin}/")),
                "{url} left {origin}"
            );
        }
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}

async fn create_as(app: &TestApp, build: &str) -> String {
    app.create(build).await["id"].as_str().unwrap().to_string()
}

async fn a_person_signs_in_and_filters_the_list_with_the_filter_in_the_address_bar() {
    let app = TestApp::spawn().await;
    let Some(browser) = Browser::start().await else {
        return app.stop().await;
    };
    let seeded = app.seed_app(WS).await;
    let first = create_as(&app, &seeded.build).await;
    create_as(&app, &seeded.build).await;
    create_as(&app, &seeded.build).await;
    let cancel = app
        .post(
            &format!("/api/deploys/{first}/cancel"),
            &app.token,
            json!({"reason": "not this one"}),
        )
        .await;
    assert_eq!(cancel.status(), StatusCode::OK);

    // `/` leads to the sign-in form; a wrong token is told so.
    browser.client.goto(&app.url("/")).await.unwrap();
    let field = browser.css("#token").await;
    assert_eq!(
        browser
            .eval("document.querySelector('label[for=token]').textContent")
            .await,
        "API token"
    );
    browser.screenshot("signin").await;
    field.send_keys("dpd_not-a-token").await.unwrap();
    browser
        .css("form.signin button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .until(
            "the refusal shown",
            "document.querySelector('#signin-error [role=alert]') !== null",
        )
        .await;
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('deployd.token')")
            .await,
        Value::Null
    );

    browser.sign_in(&app).await;
    browser
        .until(
            "three rows",
            "document.querySelectorAll('#deploys tbody tr[data-id]').length === 3",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('summary').textContent")
            .await,
        "3 shown of 3 deploys"
    );
    // Status is told in words, not colour alone.
    let badge = browser
        .eval(&format!(
            "document.querySelector('tr[data-id=\"{first}\"] .badge').textContent"
        ))
        .await;
    assert!(badge.as_str().unwrap().contains("cancelled"), "{badge}");
    browser.screenshot("deploys").await;

    // A filter puts itself in the address bar and narrows the list.
    browser
        .css("#f-status")
        .await
        .select_by_value("cancelled")
        .await
        .unwrap();
    browser
        .until(
            "the cancelled deploy alone",
            "location.search === '?status=cancelled' && document.querySelectorAll('#deploys tbody tr[data-id]').length === 1",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#deploys tbody tr').dataset.id")
            .await,
        first.as_str()
    );

    // The address alone restores a filtered view.
    browser
        .client
        .goto(&app.url("/ui/deploys?status=pending"))
        .await
        .unwrap();
    browser
        .until(
            "the two pending deploys",
            "document.querySelectorAll('#deploys tbody tr[data-status=pending]').length === 2 && document.querySelectorAll('#deploys tbody tr[data-id]').length === 2",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('f-status').value")
            .await,
        "pending"
    );

    // A bad filter: the API's own words, next to the field that caused it.
    browser
        .client
        .goto(&app.url("/ui/deploys?app=bogus"))
        .await
        .unwrap();
    browser
        .until(
            "the problem next to the app field",
            "document.querySelector('#f-app[aria-invalid=true]') !== null && document.querySelector('#f-app').parentElement.querySelector('.field-error') !== null",
        )
        .await;
    let said = browser
        .eval("document.querySelector('#f-app').parentElement.querySelector('.field-error').textContent")
        .await;
    let api_said = app.get("/api/deploys?entity_id=bogus", &app.token).await;
    let api_said = problem(api_said, StatusCode::BAD_REQUEST).await;
    assert_eq!(said, api_said["errors"][0]["message"]);
    browser.screenshot("deploys-problem").await;

    browser.client.goto(&app.url("/ui/deploys")).await.unwrap();
    browser.css("#deploys tbody tr[data-id]").await;
    browser.resize(360, 780).await;
    browser.screenshot("deploys-360px").await;
    browser.resize(1440, 900).await;

    // The other views draw (apps and webhooks say plainly when this
    // server lacks their API).
    browser.client.goto(&app.url("/ui/apps")).await.unwrap();
    browser.css("main .page-head h1").await;
    browser
        .until(
            "the apps view",
            "document.querySelector('main .card, main table') !== null",
        )
        .await;
    browser.screenshot("apps").await;
    browser.client.goto(&app.url("/ui/webhooks")).await.unwrap();
    browser
        .until(
            "the webhooks view",
            "document.querySelector('main .card') !== null",
        )
        .await;
    browser.screenshot("webhooks").await;

    browser.assert_no_request_left(&app.address).await;

    // Signing out forgets the token.
    browser.css("#signout").await.click().await.unwrap();
    browser.css("#token").await;
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('deployd.token')")
            .await,
        Value::Null
    );
    browser.stop().await;
    app.stop().await;
}

async fn a_running_deploy_page_follows_it_to_completed_without_a_reload() {
    let app = TestApp::spawn_with_worker().await;
    let Some(browser) = Browser::start().await else {
        return app.stop().await;
    };
    let seeded = app.seed_app(WS).await;
    let big = app.seed_big_build(&seeded, 5_000).await;
    let small = app.seed_build(&seeded, &[("index.html", "small")]).await;
    let running = create_as(&app, &big).await;
    app.wait_status(&running, "running").await;
    // It waits behind the running one, so its page sees it start and end.
    let waiting = create_as(&app, &small).await;

    browser.sign_in(&app).await;
    browser
        .client
        .goto(&app.url(&format!("/ui/deploys/{waiting}")))
        .await
        .unwrap();
    browser.css("#steps").await;
    browser.eval("(window.__sameDocument = true)").await;
    browser
        .until(
            "the running deploy shown",
            "document.querySelector('.sub .badge') !== null",
        )
        .await;
    let shown = browser
        .eval("document.querySelector('.sub .badge').textContent")
        .await;
    // The waiting deploy's page: it starts only once the big one ended.
    let shown = shown.as_str().unwrap();
    assert!(
        shown.contains("pending") || shown.contains("running"),
        "{shown}"
    );
    browser.screenshot("deploy-running").await;
    browser
        .until(
            "the deploy reaching completed",
            "document.querySelector('.sub .badge').textContent.includes('completed')",
        )
        .await;
    assert_eq!(browser.eval("window.__sameDocument === true").await, true);
    assert_eq!(
        browser
            .eval("[...document.querySelectorAll('#steps li')].every(li => li.classList.contains('s-completed'))")
            .await,
        true
    );
    browser.screenshot("deploy-completed").await;

    // The list: the other deploy, also followed without a reload.
    browser.client.goto(&app.url("/ui/deploys")).await.unwrap();
    browser.css("#deploys tbody tr[data-id]").await;
    browser.eval("(window.__sameDocument = true)").await;
    browser
        .until(
            "the waiting deploy completed in the list",
            &format!("document.querySelector('tr[data-id=\"{waiting}\"]')?.dataset.status === 'completed'"),
        )
        .await;
    assert_eq!(browser.eval("window.__sameDocument === true").await, true);
    browser.assert_no_request_left(&app.address).await;
    browser.stop().await;
    app.stop().await;
}

async fn a_deploy_is_cancelled_from_its_page_with_a_confirmation_and_a_reason() {
    let app = TestApp::spawn().await;
    let Some(browser) = Browser::start().await else {
        return app.stop().await;
    };
    let seeded = app.seed_app(WS).await;
    let id = create_as(&app, &seeded.build).await;
    browser.sign_in(&app).await;
    // From the list to the deploy by keyboard-reachable links. The list
    // redraws its rows as events arrive, so a link found just before a
    // redraw is stale: find it again.
    let link = format!("tr[data-id=\"{id}\"] a[href=\"/ui/deploys/{id}\"]");
    let mut clicked = false;
    for _ in 0..20 {
        if browser.css(&link).await.click().await.is_ok() {
            clicked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        clicked,
        "the deploy's link in the list could not be clicked"
    );
    // It follows the deploy: by its SSE stream where the server streams
    // (it then offers GET /api/events too), else by polling, and says which.
    let paths: Value = app
        .get("/api/openapi.json", &app.token)
        .await
        .json()
        .await
        .unwrap();
    let streams = paths["paths"].get("/api/events").is_some();
    browser
        .until(
            "the page saying how it follows the deploy",
            "['live', 'poll'].includes(document.getElementById('live-note').dataset.mode)",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        browser
            .eval("document.getElementById('live-note').dataset.mode")
            .await,
        if streams { "live" } else { "poll" }
    );
    browser.css("#cancel").await.click().await.unwrap();
    let reason = browser.css("#dlg-reason").await;
    reason.send_keys("wrong branch").await.unwrap();
    browser.screenshot("deploy-cancel-dialog").await;
    browser.css("#dlg-confirm").await.click().await.unwrap();
    browser
        .until(
            "the deploy shown cancelled",
            "document.querySelector('.sub .badge').textContent.includes('cancelled')",
        )
        .await;
    browser
        .until(
            "the reason in the event history",
            "document.getElementById('history').textContent.includes('wrong branch')",
        )
        .await;
    assert_eq!(
        browser.eval("location.pathname").await,
        format!("/ui/deploys/{id}").as_str()
    );
    assert_eq!(
        browser.eval("document.getElementById('cancel')").await,
        Value::Null
    );
    let detail = app.detail(&id).await;
    assert_eq!(detail["status"], "cancelled");
    assert_eq!(detail["cancellation"]["reason"], "wrong branch");
    assert_eq!(detail["cancellation"]["cancelledBy"], "alice");
    browser.screenshot("deploy-cancelled").await;
    browser.resize(360, 780).await;
    browser.screenshot("deploy-cancelled-360px").await;
    browser.stop().await;
    app.stop().await;
}

async fn an_app_page_shows_its_recent_deploys_and_deploys_its_latest_build() {
    let app = TestApp::spawn().await;
    let Some(browser) = Browser::start().await else {
        return app.stop().await;
    };
    let seeded = app.seed_app(WS).await;
    let earlier = create_as(&app, &seeded.build).await;
    browser.sign_in(&app).await;
    browser
        .client
        .goto(&app.url(&format!("/ui/apps/{}", seeded.app)))
        .await
        .unwrap();
    browser.css(&format!("tr[data-id=\"{earlier}\"]")).await;
    browser.screenshot("app").await;
    browser
        .css(&format!("button[data-deploy=\"{}\"]", seeded.app))
        .await
        .click()
        .await
        .unwrap();
    browser
        .until(
            "the new deploy's page",
            &format!("location.pathname.startsWith('/ui/deploys/dep_') && location.pathname !== '/ui/deploys/{earlier}' && document.querySelector('.sub .badge') !== null"),
        )
        .await;
    let path = browser.eval("location.pathname").await;
    let new_id = path
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let detail = app.detail(&new_id).await;
    assert_eq!(detail["entityId"], seeded.app.as_str());
    assert_eq!(detail["buildId"], seeded.build.as_str());
    browser.stop().await;
    app.stop().await;
}

async fn a_deploy_is_rolled_back_from_its_page_and_the_rollback_goes_live() {
    let app = TestApp::spawn_with_worker().await;
    let Some(browser) = Browser::start().await else {
        return app.stop().await;
    };
    let seeded = app.seed_app(WS).await;
    let earlier = create_as(&app, &seeded.build).await;
    app.wait_status(&earlier, "completed").await;
    let newer_build = app.seed_build(&seeded, &[("index.html", "newer")]).await;
    let newer = create_as(&app, &newer_build).await;
    app.wait_status(&newer, "completed").await;
    app.wait_for(&earlier, "no longer live", |d| d["live"] == false)
        .await;

    browser.sign_in(&app).await;
    browser
        .client
        .goto(&app.url(&format!("/ui/deploys/{earlier}")))
        .await
        .unwrap();
    browser.css("#rollback").await.click().await.unwrap();
    browser
        .css("#dlg-reason")
        .await
        .send_keys("newer build breaks checkout")
        .await
        .unwrap();
    browser.screenshot("deploy-rollback-dialog").await;
    browser.css("#dlg-confirm").await.click().await.unwrap();
    browser
        .until(
            "the rollback's own page, live",
            &format!("location.pathname.startsWith('/ui/deploys/dep_') && location.pathname !== '/ui/deploys/{earlier}' && document.querySelector('.sub .badge')?.textContent.includes('completed') && document.querySelector('.sub .live') !== null"),
        )
        .await;
    let path = browser.eval("location.pathname").await;
    let rollback = path
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let detail = app.detail(&rollback).await;
    assert_eq!(detail["trigger"], "rollback");
    assert_eq!(detail["rollbackOf"], earlier.as_str());
    assert_eq!(detail["live"], true);
    assert_eq!(detail["createdBy"], "alice");
    browser
        .until(
            "the reason in the rollback's history",
            "document.getElementById('history').textContent.includes('newer build breaks checkout')",
        )
        .await;
    browser.screenshot("deploy-rollback").await;

    // The app shows the rollback live and production pinned by it.
    browser.client.goto(&app.url("/ui/apps")).await.unwrap();
    browser
        .until(
            "the app pinned by the rollback",
            "document.querySelector('#entities .s-pinned') !== null",
        )
        .await;
    browser.screenshot("apps-pinned").await;
    browser
        .client
        .goto(&app.url(&format!("/ui/apps/{}", seeded.app)))
        .await
        .unwrap();
    browser.css(&format!("tr[data-id=\"{rollback}\"]")).await;
    browser.screenshot("app-pinned").await;
    browser.stop().await;
    app.stop().await;
}

backend_tests!(
    every_dashboard_route_answers_the_app_shell_and_the_root_redirects_there,
    assets_have_content_hashed_names_a_year_of_caching_an_etag_and_gzip,
    a_person_signs_in_and_filters_the_list_with_the_filter_in_the_address_bar,
    a_running_deploy_page_follows_it_to_completed_without_a_reload,
    a_deploy_is_cancelled_from_its_page_with_a_confirmation_and_a_reason,
    an_app_page_shows_its_recent_deploys_and_deploys_its_latest_build,
    a_deploy_is_rolled_back_from_its_page_and_the_rollback_goes_live,
);

/// Not a timed assertion: logs how long the first render of a 100-row list
/// takes in this browser (navigation start to the rows drawn).
#[tokio::test]
async fn the_first_render_of_a_100_row_list_is_measured() {
    let app = crate::support::on(Backend::Sqlite, TestApp::spawn()).await;
    let Some(browser) = Browser::start().await else {
        return app.stop().await;
    };
    let seeded = app.seed_app(WS).await;
    for _ in 0..100 {
        create_as(&app, &seeded.build).await;
    }
    browser.sign_in(&app).await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        browser
            .client
            .goto(&app.url("/ui/deploys?limit=100"))
            .await
            .unwrap();
        browser
            .until(
                "100 rows",
                "window.__firstRender !== undefined && document.querySelectorAll('#deploys tbody tr[data-id]').length === 100",
            )
            .await;
        let render = browser.eval("window.__firstRender").await;
        assert_eq!(render["rows"], 100);
        samples.push(render["sinceNavigation"].as_f64().unwrap());
    }
    samples.sort_by(f64::total_cmp);
    eprintln!(
        "dashboard: first render of a 100-row list, navigation start to rows drawn: median {:.0} ms (samples {:?})",
        samples[samples.len() / 2],
        samples.iter().map(|s| s.round()).collect::<Vec<_>>()
    );
    crate::support::on(Backend::Sqlite, async {
        browser.screenshot("deploys-100-rows").await;
    })
    .await;
    browser.stop().await;
    app.stop().await;
}
