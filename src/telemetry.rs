//! Metrics in Prometheus text format, served at `/metrics`.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `deployd_http_requests_total` | counter | `method`, `route` (the route template), `status` |
//! | `deployd_http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `deployd_commands_total` | counter | `aggregate`, `outcome` (`ok`, `refused`, `conflict`, `error`) |
//! | `deployd_command_conflicts_total` | counter | `aggregate`: optimistic-concurrency retries |
//! | `deployd_log_head_position` | gauge | the highest event position |
//! | `deployd_reader_events_behind` | gauge | `reader` (projection or relay): events not yet applied (capped at 10 000) |
//! | `deployd_reader_seconds_behind` | gauge | `reader`: age of the oldest event not yet applied |
//! | `deployd_deploys` | gauge | `status`: deploys in the read model |
//! | `deployd_step_duration_seconds` | histogram | `step`, `outcome` |
//! | `deployd_worker_redeliveries_total` | counter | worker messages delivered more than once |
//! | `deployd_worker_parked_total` | counter | worker messages acked at once because another drive held their entity (it runs them) |
//!
//! The gauges read from PostgreSQL are refreshed every few seconds by
//! [`run_collector`], in every server.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::store::Db;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// The process's recorder (installed once, on first use).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ])
            .expect("bucket list is not empty")
            .install_recorder()
            .expect("no other metrics recorder is installed")
    })
}

/// Counts and times every request by its route template.
pub async fn http_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("deployd_http_requests_total", &labels).increment(1);
    metrics::histogram!("deployd_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The text served at `/metrics`.
pub async fn render() -> String {
    handle().render()
}

async fn collect(db: &Db) -> sqlx::Result<()> {
    let head = crate::store::log::head(db).await?;
    metrics::gauge!("deployd_log_head_position").set(head as f64);
    for lag in crate::store::log::reader_lags(db).await? {
        metrics::gauge!("deployd_reader_events_behind", "reader" => lag.reader.clone())
            .set(lag.events_behind as f64);
        metrics::gauge!("deployd_reader_seconds_behind", "reader" => lag.reader)
            .set(lag.seconds_behind.max(0.0));
    }
    let statuses = crate::read_model::lookups::deploys_per_status(db).await?;
    for status in crate::domain::DeployStatus::ALL {
        let count = statuses
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map(|(_, c)| *c)
            .unwrap_or(0);
        metrics::gauge!("deployd_deploys", "status" => status.as_str()).set(count as f64);
    }
    Ok(())
}

/// Refreshes the database gauges until `shutdown`.
pub async fn run_collector(db: Db, shutdown: CancellationToken) {
    loop {
        if let Err(error) = collect(&db).await {
            tracing::warn!(%error, "collecting metrics failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
