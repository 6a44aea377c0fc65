//! One reading of the log for every SSE client of a process.
//!
//! A [`FeedHub`] follows the log (woken as every reader is: LISTEN/NOTIFY,
//! or the embedded engine's signal, with a poll as a floor) and hands each
//! new event to every subscriber whose [`Filter`] wants it, through that
//! subscriber's bounded queue. N clients cost one query per commit, not N;
//! the event's JSON is rendered once and shared.
//!
//! The hub never waits for a client: a subscriber whose queue is full is
//! cut loose at once (its queue is closed; the client reads what it holds,
//! then the stream ends, and it resumes with `Last-Event-ID`). So a slow
//! client costs at most its queue and never slows the hub or the others.
//!
//! Exact resumption: a client first reads the log itself from its own
//! position until it has caught up, then subscribes, reads once more up to
//! where the log ends now, and only then takes events from its queue,
//! skipping those at or before where its own reading stopped. Subscribing
//! and handing out a batch exclude each other (one lock), so everything
//! after the hub's position at subscription comes through the queue, and
//! everything up to it was visible to the client's last reading: no gap,
//! no repeat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::feeds::{Filter, StreamInfo, Streams};
use crate::store::db::Db;
use crate::store::log::{self, LogPosition};

/// An event as the hub hands it out: what filters look at, and its JSON.
#[derive(Debug)]
pub struct FeedEvent {
    pub log: LogPosition,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub stream: StreamInfo,
    /// The event's JSON (`feeds::body`), rendered once for every client.
    pub body: String,
}

struct Subscriber {
    filter: Filter,
    queue: mpsc::Sender<Arc<FeedEvent>>,
}

struct Following {
    /// Every event up to here has been handed out (or nobody listened).
    next: LogPosition,
    /// Nobody listened while the log moved: `next` is old, and the next
    /// subscriber starts the hub at the log's end.
    stale: bool,
    subscribers: Vec<Subscriber>,
}

/// The process's one follower of the log for SSE clients.
pub struct FeedHub {
    db: Db,
    streams: Arc<Streams>,
    /// Where the events' locations resolve (`domain::location`).
    public_url: String,
    /// Events queued per subscriber before it counts as slow.
    bound: usize,
    state: Mutex<Following>,
    /// Subscribers cut loose for falling behind, since the start.
    cut: AtomicU64,
    /// Reads of the log the hub made (one per batch).
    reads: AtomicU64,
}

/// Events read per batch.
const BATCH: i64 = 256;
/// How often an idle hub looks at the log even with no wake-up.
const IDLE_POLL: Duration = Duration::from_millis(1000);

impl FeedHub {
    /// A hub handing out at most `bound` events per subscriber before
    /// cutting it loose. Run it with [`FeedHub::run`].
    pub fn new(db: Db, streams: Arc<Streams>, public_url: String, bound: usize) -> Arc<Self> {
        Arc::new(Self {
            db,
            streams,
            public_url,
            bound: bound.max(1),
            state: Mutex::new(Following {
                next: LogPosition::START,
                stale: true,
                subscribers: Vec::new(),
            }),
            cut: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        })
    }

    /// Subscribers cut loose for falling behind, since the start.
    pub fn cut_total(&self) -> u64 {
        self.cut.load(Ordering::Relaxed)
    }

    /// Reads of the log the hub made, since the start.
    pub fn reads_total(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Subscribers being fed now.
    pub async fn subscribers(&self) -> usize {
        self.state.lock().await.subscribers.len()
    }

    /// A queue of every event `filter` wants from the hub's current
    /// position on (see the module's note for how a client joins it to its
    /// own reading). The queue closes when the subscriber falls `bound`
    /// events behind or the hub stops.
    pub async fn subscribe(
        &self,
        filter: Filter,
    ) -> Result<mpsc::Receiver<Arc<FeedEvent>>, sqlx::Error> {
        let mut state = self.state.lock().await;
        if state.stale {
            state.next = log::tail(&self.db).await?;
            state.stale = false;
        }
        let (queue, receiver) = mpsc::channel(self.bound);
        state.subscribers.push(Subscriber { filter, queue });
        metrics::gauge!("deployd_sse_clients").set(state.subscribers.len() as f64);
        Ok(receiver)
    }

    /// Follows the log until `shutdown`; subscribers' queues close then.
    pub async fn run(self: Arc<Self>, mut wake: watch::Receiver<u64>, shutdown: CancellationToken) {
        loop {
            wake.borrow_and_update();
            let more = match self.step().await {
                Ok(more) => more,
                Err(error) => {
                    tracing::warn!(%error, "the SSE feed's reading of the log failed; retrying");
                    false
                }
            };
            if !more {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = log::wait_signal(&mut wake, IDLE_POLL) => {}
                }
            } else if shutdown.is_cancelled() {
                break;
            }
        }
        self.state.lock().await.subscribers.clear();
    }

    /// Hands out one batch; true when the log may hold more now.
    async fn step(&self) -> Result<bool, sqlx::Error> {
        let mut state = self.state.lock().await;
        state.subscribers.retain(|s| !s.queue.is_closed());
        if state.subscribers.is_empty() {
            // Nobody to read for: the next subscriber starts at the end.
            state.stale = true;
            metrics::gauge!("deployd_sse_clients").set(0.0);
            return Ok(false);
        }
        let batch = log::read_after(&self.db, state.next, BATCH).await?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        let infos = self.streams.resolve(&self.db, &batch).await?;
        let more = batch.len() as i64 == BATCH;
        for (event, stream) in batch.into_iter().zip(infos) {
            state.next = event.log;
            let mut shared: Option<Arc<FeedEvent>> = None;
            let before = state.subscribers.len();
            state.subscribers.retain(|s| {
                if !s.filter.matches(&event, &stream) {
                    return !s.queue.is_closed();
                }
                let shared = shared
                    .get_or_insert_with(|| {
                        let workspace = stream.workspace.clone().unwrap_or_default();
                        Arc::new(FeedEvent {
                            log: event.log,
                            event_type: event.event_type.clone(),
                            aggregate_type: event.aggregate_type.clone(),
                            aggregate_id: event.aggregate_id.clone(),
                            body: crate::feeds::body(&event, &workspace, &self.public_url),
                            stream: stream.clone(),
                        })
                    })
                    .clone();
                match s.queue.try_send(shared) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.cut.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("deployd_sse_clients_cut_total").increment(1);
                        tracing::info!(
                            bound = self.bound,
                            "an SSE client fell behind and was cut loose; it resumes with Last-Event-ID"
                        );
                        false
                    }
                }
            });
            if state.subscribers.len() != before {
                metrics::gauge!("deployd_sse_clients").set(state.subscribers.len() as f64);
            }
        }
        Ok(more)
    }
}
