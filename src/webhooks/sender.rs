//! Sends due deliveries and records each attempt.
//!
//! One sender is active per installation (the `deployd.webhooks.sender`
//! lease); others stand by. The active one runs a task per webhook with
//! due deliveries, which sends them one at a time in log order: a slow or
//! failing endpoint holds only its own task, never another webhook's
//! deliveries. A failed attempt is retried after the schedule's next wait;
//! after the last, the delivery is `failed`. Attempts are recorded a batch
//! at a time (up to 100 sends, or up to the first failure) in one
//! transaction, so the database costs a commit per batch, not per send.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::store::db::Db;
use crate::store::lease::Leases;
use crate::store::log::{self, LogSignals};
use crate::webhooks::store::{self, Attempt, Delivery, Webhook};
use crate::webhooks::{address, signing, WebhookSettings};

const LEASE: &str = "deployd.webhooks.sender";
/// Webhooks sent to at once, at most.
const CONCURRENT: usize = 64;
/// Deliveries of one webhook sent per batch before their attempts are
/// recorded.
const BATCH: i64 = 100;
/// How often the sender looks for due deliveries without a wake-up.
const POLL: Duration = Duration::from_millis(500);

/// Sends until `shutdown`, while this process holds the sender's lease.
pub async fn run(
    db: Db,
    settings: WebhookSettings,
    signals: LogSignals,
    shutdown: CancellationToken,
) {
    let http = match address::client(settings.allow_private) {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "webhooks: cannot build the HTTP client");
            return;
        }
    };
    // One connection, kept: a standby asks for the lease every 2 s.
    let leases = Leases::new(&db, 1);
    while !shutdown.is_cancelled() {
        match leases.try_take_named(LEASE.to_string()).await {
            Ok(Some(lease)) => {
                tracing::info!("webhooks: this process sends deliveries");
                active(&db, &http, &settings, &signals, &shutdown).await;
                lease.release().await;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "webhooks: taking the sender's lease failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// The active sender's loop: a task per webhook with due deliveries.
async fn active(
    db: &Db,
    http: &reqwest::Client,
    settings: &WebhookSettings,
    signals: &LogSignals,
    shutdown: &CancellationToken,
) {
    // The fan-out moving its checkpoint is what makes new deliveries.
    let mut wake = signals.checkpoints();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let mut busy: HashSet<String> = HashSet::new();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        wake.borrow_and_update();
        while let Some(done) = tasks.try_join_next() {
            if let Ok(webhook) = done {
                busy.remove(&webhook);
            }
        }
        match store::due_webhooks(db, crate::domain::time::now()).await {
            Ok(due) => {
                failures = 0;
                for webhook in due {
                    if busy.len() >= CONCURRENT {
                        break;
                    }
                    if busy.insert(webhook.clone()) {
                        let (db, http, settings, shutdown) =
                            (db.clone(), http.clone(), settings.clone(), shutdown.clone());
                        tasks.spawn(async move {
                            if let Err(error) =
                                deliver(&db, &http, &settings, &webhook, &shutdown).await
                            {
                                tracing::warn!(
                                    error = format!("{error:#}"),
                                    webhook,
                                    "webhooks: recording a delivery failed"
                                );
                            }
                            webhook
                        });
                    }
                }
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, "webhooks: looking for due deliveries failed");
                if failures > 10 {
                    // Give the lease up; the database may be gone.
                    return;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = log::wait_signal(&mut wake, POLL) => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(webhook) = done {
                    busy.remove(&webhook);
                }
            }
        }
    }
    // In-flight sends are dropped: their deliveries are still pending and
    // are sent again by whichever sender is active next.
    tasks.abort_all();
}

/// Sends one webhook's due deliveries, in log order, until none is due.
async fn deliver(
    db: &Db,
    http: &reqwest::Client,
    settings: &WebhookSettings,
    webhook: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let Some(hook) = store::by_id(db, webhook).await? else {
            return Ok(());
        };
        if hook.disabled {
            return Ok(());
        }
        let due = store::due_deliveries(db, webhook, crate::domain::time::now(), BATCH).await?;
        if due.is_empty() {
            return Ok(());
        }
        // Sent one after another, in log order; the attempts recorded
        // together after the batch or its first failure (one transaction,
        // not one per send). A crash before that leaves them pending: they
        // are sent again (at least once).
        let mut attempts = Vec::with_capacity(due.len());
        for (delivery, body) in due {
            if shutdown.is_cancelled() {
                break;
            }
            let attempt = send(http, settings, &hook, &delivery, &body).await;
            let next = if attempt.succeeded {
                None
            } else {
                settings
                    .retry_schedule
                    .get(delivery.attempt.max(0) as usize)
                    .map(|wait| {
                        crate::domain::time::now()
                            + chrono::Duration::from_std(*wait).unwrap_or(chrono::Duration::MAX)
                    })
            };
            metrics::counter!(
                "deployd_webhook_attempts_total",
                "outcome" => if attempt.succeeded { "succeeded" } else { "failed" }
            )
            .increment(1);
            let failed = !attempt.succeeded;
            attempts.push((delivery, attempt, next));
            if failed {
                // Recorded at once; the next due delivery comes after.
                break;
            }
        }
        store::record_all(
            db,
            &attempts,
            chrono::Duration::from_std(settings.disable_after).unwrap_or(chrono::Duration::MAX),
        )
        .await?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

/// The `webhook-signature` header: the current secret's signature, and
/// during a rotation's overlap the previous one's too.
pub fn signatures(hook: &Webhook, id: &str, timestamp: i64, body: &str) -> anyhow::Result<String> {
    let mut out = signing::sign(&hook.secret, id, timestamp, body)?;
    if let (Some(previous), Some(until)) = (&hook.previous_secret, hook.previous_secret_until) {
        if until > crate::domain::time::now() {
            out.push(' ');
            out.push_str(&signing::sign(previous, id, timestamp, body)?);
        }
    }
    Ok(out)
}

/// One attempt: a 2xx within the timeout is success.
async fn send(
    http: &reqwest::Client,
    settings: &WebhookSettings,
    hook: &Webhook,
    delivery: &Delivery,
    body: &str,
) -> Attempt {
    let started = Instant::now();
    let failed = |error: String, status: Option<i32>| Attempt {
        succeeded: false,
        response_status: status,
        duration_ms: started.elapsed().as_millis() as i64,
        error: Some(error),
    };
    // Names are checked by the resolver; an address in the URL here.
    if let Err(error) = literal_allowed(&hook.url, settings.allow_private) {
        return failed(error, None);
    }
    let timestamp = chrono::Utc::now().timestamp();
    let signature = match signatures(hook, &delivery.event_id, timestamp, body) {
        Ok(s) => s,
        Err(error) => return failed(format!("signing failed: {error}"), None),
    };
    let response = http
        .post(&hook.url)
        .timeout(settings.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &delivery.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .await;
    match response {
        Ok(response) if response.status().is_success() => Attempt {
            succeeded: true,
            response_status: Some(response.status().as_u16() as i32),
            duration_ms: started.elapsed().as_millis() as i64,
            error: None,
        },
        Ok(response) => {
            let status = response.status();
            failed(
                format!("the endpoint answered {status}"),
                Some(status.as_u16() as i32),
            )
        }
        Err(error) if error.is_timeout() => failed(
            format!("no answer within {} ms", settings.timeout.as_millis()),
            None,
        ),
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            failed(text, None)
        }
    }
}

/// Refuses a URL whose host is a private address literal.
fn literal_allowed(url: &str, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let ip: Option<std::net::IpAddr> = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(ip.into()),
        Some(url::Host::Ipv6(ip)) => Some(ip.into()),
        _ => None,
    };
    match ip {
        Some(ip) if address::is_private(ip) => Err(format!(
            "refused: {ip} is a private address (DEPLOYD_WEBHOOK_ALLOW_PRIVATE is off)"
        )),
        _ => Ok(()),
    }
}
