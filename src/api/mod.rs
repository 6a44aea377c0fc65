//! The REST API (the reference: `/api/docs`; the list language: `docs/filter.md`).
//!
//! - [`problem`]: the one error boundary (problem+json).
//! - [`auth`]: bearer tokens → the caller and their workspaces.
//! - [`deploys`]: create, detail, cancel, events; [`list`]: the list.
//! - [`idempotency`]: `Idempotency-Key` records.
//! - [`ui`]: the web dashboard at `/ui/`.

pub mod auth;
pub mod catalog;
pub mod deploys;
pub mod docs;
pub mod events;
pub mod idempotency;
pub mod list;
pub mod listener;
pub mod params;
pub mod problem;
pub mod ratelimit;
pub mod releases;
pub mod sites;
pub mod ui;
pub mod uploads;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use aide::axum::routing::{get_with, post_with, put_with};
use aide::axum::ApiRouter;
use aide::openapi::{OpenApi, SecurityScheme};
use aide::transform::TransformOpenApi;
use axum::http::{HeaderName, StatusCode};
use axum::{Extension, Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId as TowerRequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::api::problem::Problem;
use crate::store::commands::Commands;
use crate::store::log::LogSignals;

/// Tunables of the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// How long a command's answer waits for the read model to show it.
    pub projection_wait: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// Largest request body.
    pub body_limit: usize,
    /// Longest wait for the next part of a request body (408 after it).
    pub body_timeout: Duration,
    /// Requests per second per token (0: no limit), and the burst above it.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Events queued per SSE client before it counts as slow.
    pub sse_buffer: usize,
    /// How long a slow SSE client's queue may stay full before it is
    /// disconnected.
    pub sse_slow_client: Duration,
    /// A comment line on an idle SSE stream this often.
    pub sse_heartbeat: Duration,
    /// Failed authentications per second per client address (0: no
    /// limit), and the burst above it.
    pub auth_failure_rate: u32,
    pub auth_failure_burst: u32,
    /// `/readyz` answers 503 when a reader has had events waiting, without
    /// moving, for longer than this.
    pub ready_max_lag: Duration,
    /// Largest file of an upload (`PUT /api/blobs/{sha256}`), in bytes.
    pub max_blob_bytes: u64,
    /// Most files an uploaded build may hold.
    pub max_build_files: usize,
}

impl ApiSettings {
    /// Largest body of `POST /api/builds`: its file list, at most
    /// [`MAX_PATH_BYTES`](uploads::MAX_PATH_BYTES) of path and the rest of
    /// an entry per file.
    pub fn build_body_limit(&self) -> usize {
        self.body_limit.max(
            self.max_build_files
                .saturating_mul(uploads::MAX_PATH_BYTES + 160),
        )
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            projection_wait: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            body_limit: 64 * 1024,
            body_timeout: Duration::from_secs(10),
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            sse_buffer: 1024,
            sse_slow_client: Duration::from_secs(5),
            sse_heartbeat: Duration::from_secs(15),
            auth_failure_rate: 1,
            auth_failure_burst: 20,
            ready_max_lag: Duration::from_secs(30),
            max_blob_bytes: 25 * 1024 * 1024,
            max_build_files: 20_000,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: crate::store::Db,
    pub commands: Arc<Commands>,
    pub signals: LogSignals,
    /// Leases the use cases take (`app::entities`' names lock).
    pub leases: crate::store::lease::Leases,
    pub cursor_key: Vec<u8>,
    pub settings: ApiSettings,
    /// `DEPLOYD_PUBLIC_URL` (or `http://<listen address>`): where deploys
    /// are served, as recorded paths, become URLs under it in every answer
    /// (`domain::location`).
    pub public_url: String,
    /// Set when deploys are hosted locally: the sites are served here.
    pub hosting: Option<Arc<crate::hosting::local::LocalHosting>>,
    /// Builds' files: uploads go here.
    pub store: Arc<crate::hosting::store::ArtifactStore>,
    /// Records builds as the catalog does (an upload's finalize).
    pub catalog: crate::catalog::CatalogFeed,
    pub limiter: ratelimit::RateLimiter,
    /// Failed authentications per client address.
    pub auth_failures: ratelimit::RateLimiter,
    /// When tokens' last uses were recorded.
    pub last_use: auth::LastUse,
    /// For `/readyz`: NATS, or `None` on the in-process bus.
    pub nats: Option<async_nats::Client>,
    /// Streams' workspaces and entities, for the feeds.
    pub streams: Arc<crate::feeds::Streams>,
    /// The one follower of the log that feeds every `/api/events` stream.
    pub hub: Arc<crate::feeds::hub::FeedHub>,
    /// How webhooks are checked (private addresses) and rotated.
    pub webhooks: crate::webhooks::WebhookSettings,
    /// The AsyncAPI document (`feeds::asyncapi`), for this NATS prefix.
    pub asyncapi: serde_json::Value,
    /// The server's shutdown: long-lived responses (SSE) end on it.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// What the use cases run on.
    pub fn services(&self) -> crate::app::Services<'_> {
        crate::app::Services {
            db: &self.db,
            commands: &self.commands,
            signals: &self.signals,
            leases: &self.leases,
            projection_wait: self.settings.projection_wait,
        }
    }
}

/// Loads the key that signs list cursors (made by a migration).
pub async fn cursor_key(db: &crate::store::Db) -> sqlx::Result<Vec<u8>> {
    crate::store::access::cursor_key(db).await
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint")
}

async fn method_not_allowed() -> Problem {
    let mut p = Problem::not_found("this endpoint does not take that method");
    p.status = StatusCode::METHOD_NOT_ALLOWED;
    p.title = "Method not allowed";
    p
}

/// Request ids are `req_` + ULID when the client sent none.
#[derive(Clone, Copy)]
struct RequestUlid;

impl MakeRequestId for RequestUlid {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<TowerRequestId> {
        let id = format!("req_{}", ulid::Ulid::generate());
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(TowerRequestId::new)
    }
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// The database answers with every migration applied, and NATS is
/// connected. On the in-process bus `nats` says so: the server is ready,
/// and no events reach outside subscribers.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let expected = state.db.expected_schema_version().unwrap_or(0);
    let applied = state.db.schema_version().await;
    let database = match applied {
        Ok(Some(v)) if v >= expected => "ok".to_string(),
        Ok(_) => "migrations not applied".to_string(),
        Err(e) => format!("unreachable: {e}"),
    };
    let (nats, nats_ok) = match &state.nats {
        Some(client) => match client.connection_state() {
            async_nats::connection::State::Connected => ("ok".to_string(), true),
            other => (format!("{other:?}").to_lowercase(), false),
        },
        None => (
            "off: in-process bus (no NATS_URL); events are not published to subscribers"
                .to_string(),
            true,
        ),
    };
    // Every reader of the log must be moving: one that cannot apply an
    // event, or has not moved for longer than the bound, is named here.
    let (readers, readers_ok) = if database == "ok" {
        match crate::store::log::reader_statuses(
            &state.db,
            state.signals.health(),
            state.settings.ready_max_lag,
        )
        .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "readiness: reading the readers' checkpoints failed");
                (Vec::new(), false)
            }
        }
    } else {
        (Vec::new(), false)
    };
    let stuck: Vec<String> = readers
        .iter()
        .filter(|r| r.status != "ok")
        .map(|r| match &r.error {
            Some(error) => format!(
                "{} {} after position {}: {error}",
                r.reader, r.status, r.position
            ),
            None => format!(
                "{} {} after position {} ({} events waiting, {:.0} s without moving)",
                r.reader, r.status, r.position, r.events_behind, r.stalled_seconds
            ),
        })
        .collect();
    let ready = database == "ok" && nats_ok && readers_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "ready": ready,
            "engine": state.db.engine().as_str(),
            "database": database,
            "nats": nats,
            "readers": readers,
            "problems": stuck,
        })),
    )
        .into_response()
}

async fn asyncapi_json(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Json<serde_json::Value> {
    Json(state.asyncapi.clone())
}

async fn openapi_json(Extension(api): Extension<Arc<OpenApi>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    Json(api.as_ref()).into_response()
}

fn describe_api(api: TransformOpenApi<'_>) -> TransformOpenApi<'_> {
    api.title("deployd")
        .version(env!("CARGO_PKG_VERSION"))
        .description(docs::API_DESCRIPTION)
        .security_scheme(
            "bearer",
            SecurityScheme::Http {
                scheme: "bearer".into(),
                bearer_format: Some("dpd_…".into()),
                description: Some("A token from `deployd token create`.".into()),
                extensions: Default::default(),
            },
        )
}

/// A webhook operation's description.
fn hook_op<'t>(
    t: aide::transform::TransformOperation<'t>,
    summary: &str,
    description: &str,
) -> aide::transform::TransformOperation<'t> {
    docs::tagged_op(t, "webhooks", summary, description)
}

/// The API's routes, each with its OpenAPI description.
fn api_routes() -> ApiRouter<AppState> {
    use docs::{op, tagged_op, CancelRequest, CancelResponse, CreateDeployRequest, Readiness};
    use problem::Problem;
    ApiRouter::new()
        .api_route(
            "/api/deploys",
            get_with(list::list, |t| {
                op(t, "List deploys", "Filter, order and keyset pages; see the DeployFilter and DeployOrderBy schemas.")
                    .response::<200, Json<crate::read_model::list::ListPage>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad parameter, named by pointer"))
            })
            .post_with(deploys::create, |t| {
                op(t, "Create a deploy", "Deploy a build, or the latest successful build of an app's default version. Answers the deploy row once the read model shows it.")
                    .input::<Json<CreateDeployRequest>>()
                    .response_with::<201, Json<crate::read_model::DeployRow>, _>(docs::location)
                    .response_with::<400, Problem, _>(|r| r.description("A bad body, named by pointer"))
                    .response_with::<404, Problem, _>(|r| r.description("The build or app is unknown or outside the caller's workspaces"))
                    .response_with::<408, Problem, _>(|r| r.description("The body did not arrive in time"))
                    .response_with::<413, Problem, _>(|r| r.description("The body is larger than the server takes"))
                    .response_with::<415, Problem, _>(|r| r.description("The body is not sent as application/json"))
                    .response_with::<409, Problem, _>(|r| r.description("The Idempotency-Key's first request is still in flight"))
                    .response_with::<422, Problem, _>(|r| r.description("The build did not succeed, the app has no successful build, or the Idempotency-Key was used with another request"))
                    .response_with::<503, Problem, _>(|r| r.description("Recorded, but the read model is behind; see Retry-After"))
            }),
        )
        .api_route(
            "/api/deploys/{id}",
            get_with(deploys::detail, |t| {
                op(t, "Get a deploy", "The deploy with its steps and, once cancelled, its cancellation.")
                    .response::<200, Json<deploys::DeployDetail>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad parameter (asOf, or one the endpoint does not take), named by pointer"))
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
            }),
        )
        .api_route(
            "/api/deploys/{id}/cancel",
            post_with(deploys::cancel, |t| {
                op(t, "Cancel a deploy", "A pending deploy is cancelled at once; a running one at once in the log, its step in flight finishing as discarded.")
                    .input::<Json<CancelRequest>>()
                    .response::<200, Json<CancelResponse>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad body, named by pointer"))
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
                    .response_with::<408, Problem, _>(|r| r.description("The body did not arrive in time"))
                    .response_with::<413, Problem, _>(|r| r.description("The body is larger than the server takes"))
                    .response_with::<415, Problem, _>(|r| r.description("The body is not sent as application/json"))
                    .response_with::<409, Problem, _>(|r| r.description("The deploy is already completed, failed or cancelled"))
                    .response_with::<422, Problem, _>(|r| r.description("The Idempotency-Key was used with another request"))
            }),
        )
        .api_route(
            "/api/entities",
            get_with(catalog::entities, |t| {
                op(t, "List entities", "Apps and functions with what is live and whether production is pinned; keyset pages in id order; `name` finds one by its name.")
                    .response::<200, Json<crate::read_model::catalog_pages::Page<crate::read_model::catalog_pages::EntityView>>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad parameter, named by pointer"))
            })
            .post_with(catalog::create_entity, |t| {
                op(t, "Create an entity", "An app or function without an upstream catalog, with a default version of its own; recorded as the same EntityUpserted event a catalog document makes. Answers the entity once the read model shows it.")
                    .input::<Json<docs::CreateEntityRequest>>()
                    .response_with::<201, Json<crate::read_model::catalog_pages::EntityView>, _>(|r| r.description("Created; Location names it"))
                    .response_with::<400, Problem, _>(|r| r.description("A bad body, named by pointer"))
                    .response_with::<408, Problem, _>(|r| r.description("The body did not arrive in time"))
                    .response_with::<409, Problem, _>(|r| r.description("The workspace already has an entity of that name"))
                    .response_with::<413, Problem, _>(|r| r.description("The body is larger than the server takes"))
                    .response_with::<415, Problem, _>(|r| r.description("The body is not sent as application/json"))
                    .response_with::<503, Problem, _>(|r| r.description("Recorded, but the read model is behind; see Retry-After"))
            }),
        )
        .api_route(
            "/api/entities/{id}",
            get_with(catalog::entity, |t| {
                op(t, "Get an entity", "An app or function with its release; with asOf, as the log stood at that instant (what was live then).")
                    .response::<200, Json<crate::read_model::catalog_pages::EntityView>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad asOf"))
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, outside the caller's workspaces, or not yet existing at asOf"))
            }),
        )
        .api_route(
            "/api/builds",
            get_with(catalog::builds, |t| {
                op(t, "List builds", "Builds, newest first; keyset pages.")
                    .response::<200, Json<crate::read_model::catalog_pages::Page<crate::read_model::catalog_pages::BuildView>>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad parameter, named by pointer"))
            })
            .post_with(uploads::create, |t| {
                tagged_op(t, "uploads", "Start an uploaded build", "Lists the build's files (path, SHA-256, size). Answers the new build, `uploading`, with the blobs this workspace has not sent before (`missing`): PUT each to /api/blobs/{sha256}, then finalize. Paths are normalised (`./`, repeated `/`); absolute paths, `..`, NUL, a path listed twice, or more than DEPLOYD_MAX_BUILD_FILES files are refused, naming the entry.")
                    .input::<Json<uploads::CreateBuildRequest>>()
                    .response_with::<201, Json<uploads::CreateBuildResponse>, _>(|r| r.description("The build, uploading; Location names it"))
                    .response_with::<400, Problem, _>(|r| r.description("A bad body, named by pointer"))
                    .response_with::<404, Problem, _>(|r| r.description("The entity is unknown or outside the caller's workspaces"))
                    .response_with::<408, Problem, _>(|r| r.description("The body did not arrive in time"))
                    .response_with::<413, Problem, _>(|r| r.description("The body, or a file it lists, is larger than the server takes"))
                    .response_with::<415, Problem, _>(|r| r.description("The body is not sent as application/json"))
                    .response_with::<422, Problem, _>(|r| r.description("No versionId, and the entity has no default version"))
            }),
        )
        .api_route(
            "/api/builds/{id}",
            get_with(catalog::build, |t| {
                op(t, "Get a build", "A build as upstream reported it.")
                    .response::<200, Json<crate::read_model::catalog_pages::BuildView>>()
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
            }),
        )
        .api_route(
            "/api/builds/{id}/finalize",
            post_with(uploads::finalize, |t| {
                tagged_op(t, "uploads", "Finalize an uploaded build", "Once every blob is stored, the build is recorded as succeeded through the same events as an upstream build.succeeded (so an entity with autoDeploy deploys it: autoDeployId). Finalizing again answers the same build.")
                    .response::<200, Json<uploads::FinalizedBuild>>()
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
                    .response_with::<422, Problem, _>(|r| r.description("Blobs are still missing: listed in `missing`"))
            }),
        )
        .api_route(
            "/api/blobs/{sha256}",
            put_with(uploads::put_blob, |t| {
                tagged_op(t, "uploads", "Upload one file", "The file's bytes as the body (any content type). They are hashed on the way into the artifact store: a body whose SHA-256 is not the one in the path stores nothing. Idempotent. Only a blob that one of the caller's uploading builds lists is taken.")
                    .response::<200, Json<uploads::BlobStored>>()
                    .response_with::<400, Problem, _>(|r| r.description("The bytes do not hash to the path's SHA-256, or their size is not the one the build lists; nothing was stored"))
                    .response_with::<404, Problem, _>(|r| r.description("No uploading build of the caller's workspaces lists this blob"))
                    .response_with::<408, Problem, _>(|r| r.description("The body did not arrive in time"))
                    .response_with::<413, Problem, _>(|r| r.description("Larger than DEPLOYD_MAX_BLOB_BYTES"))
            }),
        )
        .api_route(
            "/api/deploys/{id}/rollback",
            post_with(releases::rollback, |t| {
                op(t, "Roll back to a deploy", "A new production deploy (trigger rollback, rollbackOf) of a completed production deploy that is not live now; stored files are reused. When it completes it goes live and pins production: later auto-deploys complete without going live until a promotion or a manual production deploy completes.")
                    .input::<Json<CancelRequest>>()
                    .response::<201, Json<crate::read_model::DeployRow>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad body, named by pointer"))
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
                    .response_with::<409, Problem, _>(|r| r.description("Not eligible, and why: not completed, not a production deploy, or live already (nothing is recorded)"))
                    .response_with::<422, Problem, _>(|r| r.description("The Idempotency-Key was used with another request"))
                    .response_with::<503, Problem, _>(|r| r.description("Recorded, but the read model is behind; see Retry-After"))
            }),
        )
        .api_route(
            "/api/deploys/{id}/promote",
            post_with(releases::promote, |t| {
                op(t, "Promote a deploy", "A new production deploy (trigger manual, promotedFrom) of a completed deploy of any target that is not live now; nothing is rebuilt. When it completes it goes live and unpins production.")
                    .input::<Json<CancelRequest>>()
                    .response::<201, Json<crate::read_model::DeployRow>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad body, named by pointer"))
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
                    .response_with::<409, Problem, _>(|r| r.description("Not eligible, and why: not completed, or live already (nothing is recorded)"))
                    .response_with::<422, Problem, _>(|r| r.description("The Idempotency-Key was used with another request"))
                    .response_with::<503, Problem, _>(|r| r.description("Recorded, but the read model is behind; see Retry-After"))
            }),
        )
        .api_route(
            "/api/deploys/{id}/events",
            get_with(events::deploy_events, |t| {
                op(t, "A deploy's events", "Everything on the deploy row, explained: its events in order, keyset by sequence. With `Accept: text/event-stream`, a Server-Sent Events stream of them (`id:` the sequence, `event:` the type, `data:` the event as every feed sends it), from after `Last-Event-ID` or `after`, with a comment line at least every 15 s, closed after the deploy's terminal event.")
                    .response::<200, Json<Vec<deploys::AuditEvent>>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad parameter, named by pointer"))
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
            }),
        )
        .api_route(
            "/api/events",
            get_with(events::feed, |t| {
                op(t, "The event feed", "The caller's workspaces' events in log order, as keyset pages (`after` = `endCursor`). With `Accept: text/event-stream`, an endless Server-Sent Events stream (`id:` the position token), resumable with `Last-Event-ID`. Filters: types, entity_id, deploy_id, workspace_id.")
                    .response::<200, Json<events::FeedPage>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad parameter, named by pointer"))
            }),
        )
        .api_route(
            "/api/webhooks",
            get_with(webhooks::list, |t| {
                hook_op(t, "List webhooks", "The caller's workspaces' webhooks (secrets are not shown).")
                    .response::<200, Json<webhooks::WebhookList>>()
            })
            .post_with(webhooks::create, |t| {
                hook_op(t, "Create a webhook", "Events of the workspace are POSTed to the URL, signed as Standard Webhooks. The answer holds the secret, shown only here.")
                    .input::<Json<webhooks::CreateWebhookRequest>>()
                    .response::<201, Json<webhooks::WebhookView>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad body (not http(s), a private address, an unknown event type), named by pointer"))
            }),
        )
        .api_route(
            "/api/webhooks/{id}",
            get_with(webhooks::get, |t| {
                hook_op(t, "Get a webhook", "Without its secret.")
                    .response::<200, Json<webhooks::WebhookView>>()
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
            })
            .patch_with(webhooks::update, |t| {
                hook_op(t, "Change a webhook", "`{\"disabled\": false}` re-enables a disabled webhook; `url`, `events` and `description` may change too.")
                    .input::<Json<webhooks::UpdateWebhookRequest>>()
                    .response::<200, Json<webhooks::WebhookView>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad body, named by pointer"))
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
            })
            .delete_with(webhooks::delete, |t| {
                hook_op(t, "Delete a webhook", "Its pending deliveries are dropped.")
                    .response::<204, ()>()
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
            }),
        )
        .api_route(
            "/api/webhooks/{id}/rotate-secret",
            post_with(webhooks::rotate_secret, |t| {
                hook_op(t, "Rotate a webhook's secret", "A new secret, shown in this answer only; for 24 h deliveries carry signatures under both.")
                    .response::<200, Json<webhooks::WebhookView>>()
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
            }),
        )
        .api_route(
            "/api/webhooks/{id}/deliveries",
            get_with(webhooks::deliveries, |t| {
                hook_op(t, "A webhook's deliveries", "Newest first, keyset pages (`after` = `endCursor`).")
                    .response::<200, Json<webhooks::DeliveriesPage>>()
                    .response_with::<400, Problem, _>(|r| r.description("A bad parameter, named by pointer"))
                    .response_with::<404, Problem, _>(|r| r.description("Unknown, or outside the caller's workspaces"))
            }),
        )
        .api_route(
            "/api/webhooks/{id}/deliveries/{deliveryId}/retry",
            post_with(webhooks::retry, |t| {
                hook_op(t, "Send a delivery again", "Makes the delivery due now.")
                    .response::<202, Json<crate::webhooks::store::Delivery>>()
                    .response_with::<404, Problem, _>(|r| r.description("Unknown webhook or delivery"))
            }),
        )
        .api_route(
            "/healthz",
            get_with(healthz, |t| t.summary("The process is up").tag("operations").response::<200, String>()),
        )
        .api_route(
            "/readyz",
            get_with(readyz, |t| {
                t.summary("The database (migrated) and NATS are reachable, and every reader of the log moves")
                    .tag("operations")
                    .response::<200, Json<Readiness>>()
                    .response_with::<503, Json<Readiness>, _>(|r| r.description("Not ready"))
            }),
        )
        .api_route(
            "/metrics",
            get_with(crate::telemetry::render, |t| {
                t.summary("Prometheus metrics").tag("operations").response::<200, String>()
            }),
        )
        .api_route(
            "/api/openapi.json",
            get_with(openapi_json, |t| {
                t.summary("This document (OpenAPI 3.1)")
                    .tag("operations")
                    .response::<200, Json<serde_json::Value>>()
            }),
        )
        .api_route(
            "/api/asyncapi.json",
            get_with(asyncapi_json, |t| {
                t.summary("The AsyncAPI 3.0 document of the event feeds: NATS channels, messages, payload schemas, webhooks")
                    .tag("operations")
                    .response::<200, Json<serde_json::Value>>()
            }),
        )
        .route("/api/docs", axum::routing::get(docs::reference_page))
}

/// The OpenAPI document of [`router`], for tools and tests.
pub fn openapi() -> OpenApi {
    let mut api = OpenApi::default();
    let _ = api_routes().finish_api_with(&mut api, describe_api);
    docs::every_answer(&mut api);
    api
}

/// The largest body a request may send: `DEPLOYD_BODY_LIMIT`, but a
/// build's file list and a blob may be larger (a blob's own limit is the
/// handler's, which answers 413 naming it). As tower-http's
/// `RequestBodyLimit` does: a `Content-Length` over the limit is a 413 at
/// once, and a body that grows past it fails the handler's read with one.
async fn limit_body(
    axum::extract::State(settings): axum::extract::State<ApiSettings>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path();
    let limit = match *request.method() {
        axum::http::Method::PUT if path.starts_with("/api/blobs/") => {
            usize::try_from(settings.max_blob_bytes.saturating_add(1)).unwrap_or(usize::MAX)
        }
        axum::http::Method::POST if path == "/api/builds" => settings.build_body_limit(),
        _ => settings.body_limit,
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) && !path.starts_with("/api/blobs/") {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let request =
        request.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit)));
    next.run(request).await
}

/// The router with its middleware.
pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let settings = state.settings.clone();
    let mut api = OpenApi::default();
    let documented = api_routes().finish_api_with(&mut api, describe_api);
    docs::every_answer(&mut api);
    documented
        .route("/preview/{deploy}", axum::routing::get(sites::add_slash))
        .route(
            "/preview/{deploy}/",
            axum::routing::get(sites::preview_root),
        )
        .route(
            "/preview/{deploy}/{*path}",
            axum::routing::get(sites::preview),
        )
        .route("/live/{entity}", axum::routing::get(sites::add_slash))
        .route("/live/{entity}/", axum::routing::get(sites::live_root))
        .route("/live/{entity}/{*path}", axum::routing::get(sites::live))
        .merge(ui::routes())
        .layer(Extension(Arc::new(api)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            settings.clone(),
            limit_body,
        ))
        // A body that stops arriving is a 408, before the request timeout.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            settings.body_timeout,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn(problem::every_error_is_a_problem))
        // gzip for clients that accept it (the sites, the JSON, the
        // reference page); images and tiny bodies are sent as they are.
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(crate::telemetry::http_metrics))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<axum::body::Body>| {
                let request_id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    uri = %request.uri().path(),
                    request_id,
                )
            },
        ))
        .layer(SetRequestIdLayer::new(request_id, RequestUlid))
}
