//! `deployd deploys …`, `deployd apps …`, `deployd builds …`: a client of
//! the API for people at a terminal. Tables by default, `--json` for
//! scripts; `create --wait` (and `rollback`/`promote --wait`) and `watch`
//! follow the deploy's event stream (SSE) step by step and exit non-zero
//! unless it completes.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: DeploysCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeploysCommand {
    /// List deploys, newest first (or in `--order-by`).
    List(ListArgs),
    /// Show one deploy with its steps.
    Get { id: String },
    /// Deploy an app's latest successful build, or a given build.
    Create {
        #[arg(long, conflicts_with = "build", required_unless_present = "build")]
        app: Option<String>,
        #[arg(long)]
        build: Option<String>,
        /// A JSON object stored on the deploy.
        #[arg(long)]
        metadata: Option<String>,
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Follow the deploy until it ends; exit non-zero unless it completes.
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a pending or running deploy.
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// A deploy's events, in order.
    Events { id: String },
    /// Follow a deploy as it runs (its event stream) until it ends; exit
    /// non-zero unless it completes.
    Watch { id: String },
    /// Go back to an earlier production deploy: a new deploy of its build
    /// that goes live and pins production.
    Rollback(ReleaseArgs),
    /// Make a finished deploy (a preview, or one kept off production by a
    /// pin) the production one; unpins production.
    Promote(ReleaseArgs),
}

/// Where the server is and how to talk to it (the flags of every client
/// command: `deploys`, `apps`, `builds`, `deploy`).
#[derive(Debug, Args)]
pub struct Connection {
    /// The deployd server.
    #[arg(
        long,
        env = "DEPLOYD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// A bearer token (`deployd token create`).
    #[arg(long, env = "DEPLOYD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AppsArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: AppsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// List apps and functions with what is live.
    List {
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// The `endCursor` of the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one app or function: what is live, since when, whether pinned.
    Get {
        id: String,
        /// An RFC 3339 instant: what was live then.
        #[arg(long)]
        as_of: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct BuildsArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: BuildsCommand,
}

#[derive(Debug, Subcommand)]
pub enum BuildsCommand {
    /// List builds, newest first.
    List {
        /// Only builds of this app or function.
        #[arg(long)]
        app: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// The `endCursor` of the previous page.
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one build.
    Get { id: String },
}

/// The list's parameters; each is the query parameter of the same meaning
/// (`GET /api/deploys`, the filter language in docs/filter.md).
#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// Only deploys in this status (pending, running, completed, failed,
    /// cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only deploys of this app or function (`app_…`, `fn_…`).
    #[arg(long)]
    pub entity: Option<String>,
    /// Only deploys of this workspace (`ws_…`).
    #[arg(long)]
    pub workspace: Option<String>,
    /// Only deploys of this build (`bld_…`).
    #[arg(long)]
    pub build: Option<String>,
    /// Only deploys with this trigger (manual, auto, rollback).
    #[arg(long)]
    pub trigger: Option<String>,
    /// Only deploys created by this principal (a token's name).
    #[arg(long)]
    pub created_by: Option<String>,
    /// Only these deploys: comma-separated ids (at most 100).
    #[arg(long)]
    pub ids: Option<String>,
    /// A DeployFilter, as JSON: `{"status":{"in":["failed","cancelled"]}}`.
    #[arg(long)]
    pub filter: Option<String>,
    /// A DeployOrderBy array, as JSON: `[{"completedAt":"descNullsLast"}]`.
    #[arg(long)]
    pub order_by: Option<String>,
    /// Page size, 1 to 100.
    #[arg(long)]
    pub limit: Option<u32>,
    /// The page after this cursor (`endCursor` of the previous page).
    #[arg(long, conflicts_with = "before")]
    pub after: Option<String>,
    /// The page before this cursor (`startCursor` of the next page).
    #[arg(long)]
    pub before: Option<String>,
}

impl ListArgs {
    /// (flag, query parameter, value) of every parameter given, in a fixed
    /// order, cursors left out.
    fn given(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        let mut add = |flag: &'static str, param: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((flag, param, v.clone()));
            }
        };
        add("--status", "status", &self.status);
        add("--entity", "entity_id", &self.entity);
        add("--workspace", "workspace_id", &self.workspace);
        add("--build", "build_id", &self.build);
        add("--trigger", "trigger", &self.trigger);
        add("--created-by", "created_by", &self.created_by);
        add("--ids", "ids", &self.ids);
        add("--filter", "filter", &self.filter);
        add("--order-by", "orderBy", &self.order_by);
        add("--limit", "limit", &self.limit.map(|l| l.to_string()));
        out
    }

    /// The query string of this request.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query: Vec<(&'static str, String)> =
            self.given().into_iter().map(|(_, p, v)| (p, v)).collect();
        if let Some(after) = &self.after {
            query.push(("after", after.clone()));
        }
        if let Some(before) = &self.before {
            query.push(("before", before.clone()));
        }
        query
    }

    /// The command line that fetches the page at `cursor` (`--after` or
    /// `--before`) with the same filters, order and size: the cursor is only
    /// valid with them.
    fn command_for(&self, side: &str, cursor: &str) -> String {
        let mut words = vec!["deployd".to_string(), "deploys".into(), "list".into()];
        for (flag, _, value) in self.given() {
            words.push(flag.to_string());
            words.push(shell_quote(&value));
        }
        words.push(side.to_string());
        words.push(shell_quote(cursor));
        words.join(" ")
    }
}

/// `value` as one word for a POSIX shell (quoted only when it needs it).
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.,:/=@+".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
    pub(super) token: String,
}

/// A problem+json answer, as a sentence.
pub(super) fn describe_problem(status: reqwest::StatusCode, body: &Value) -> String {
    let mut text = format!(
        "{} {}: {}",
        status.as_u16(),
        body["title"].as_str().unwrap_or("error"),
        body["detail"].as_str().unwrap_or("")
    );
    if status == reqwest::StatusCode::UNAUTHORIZED {
        text.push_str(
            "\n  DEPLOYD_TOKEN is not a token of this server: make one where its database is, \
             with `deployd token create --workspace ws_… --name YOU`",
        );
    }
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    // One bad part is already the detail (`pointer: message`): say it once.
    let repeated = match errors.as_slice() {
        [one] => {
            body["detail"].as_str()
                == Some(&format!(
                    "{}: {}",
                    one["pointer"].as_str().unwrap_or(""),
                    one["message"].as_str().unwrap_or("")
                ))
        }
        _ => false,
    };
    if !repeated {
        for e in &errors {
            text.push_str(&format!(
                "\n  {}: {}",
                e["pointer"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            ));
        }
    }
    text
}

impl Client {
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach deployd at {}: {e}", self.url))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            anyhow::bail!("{}", describe_problem(status, &body))
        }
    }

    pub(super) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    pub(super) async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(self.endpoint(path)).query(query))
            .await
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A plain aligned table.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.clone()));
    }
    out
}

fn deploy_rows(rows: &[Value]) -> String {
    table(
        &[
            "ID", "ENTITY", "#", "STATUS", "TRIGGER", "TARGET", "LIVE", "BUILD", "CREATED",
        ],
        &rows
            .iter()
            .map(|r| {
                [
                    "id",
                    "entityId",
                    "sequenceNumber",
                    "status",
                    "trigger",
                    "target",
                    "live",
                    "buildId",
                    "createdAt",
                ]
                .iter()
                .map(|k| cell(&r[*k]))
                .collect()
            })
            .collect::<Vec<_>>(),
    )
}

fn deploy_detail(d: &Value) -> String {
    let mut out = String::new();
    for (label, key) in [
        ("id", "id"),
        ("status", "status"),
        ("entity", "entityId"),
        ("number", "sequenceNumber"),
        ("build", "buildId"),
        ("trigger", "trigger"),
        ("target", "target"),
        ("live", "live"),
        ("rollback of", "rollbackOf"),
        ("promoted", "promotedFrom"),
        ("superseded", "supersededBy"),
        ("created by", "createdBy"),
        ("created", "createdAt"),
        ("started", "startedAt"),
        ("completed", "completedAt"),
        ("preview", "previewUrl"),
        ("production", "productionUrl"),
        ("error", "error"),
    ] {
        out.push_str(&format!("{label:<11} {}\n", cell(&d[key])));
    }
    if d["cancellation"].is_object() {
        let c = &d["cancellation"];
        out.push_str(&format!(
            "{:<11} by {} at {}: {}\n",
            "cancelled",
            cell(&c["cancelledBy"]),
            cell(&c["cancelledAt"]),
            cell(&c["reason"])
        ));
    }
    let steps: Vec<Vec<String>> = d["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| {
                    ["name", "status", "startedAt", "completedAt", "error"]
                        .iter()
                        .map(|k| cell(&s[*k]))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    out.push('\n');
    out.push_str(&table(
        &["STEP", "STATUS", "STARTED", "COMPLETED", "ERROR"],
        &steps,
    ));
    out
}

fn print(json_out: bool, value: &Value, text: impl FnOnce(&Value) -> String) {
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", text(value));
    }
}

/// The last line of a deploy that did not complete: why, and for a
/// cancelled one, who cancelled it.
pub(super) fn ending(id: &str, d: &Value) -> String {
    let status = d["status"].as_str().unwrap_or("");
    if status == "cancelled" {
        let c = &d["cancellation"];
        let reason = c["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_else(|| " (no reason given)".into());
        format!(
            "deploy {id} cancelled by {}{reason}",
            c["cancelledBy"].as_str().unwrap_or("someone unknown")
        )
    } else {
        format!("deploy {id} {status}: {}", cell(&d["error"]))
    }
}

/// One Server-Sent Events message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Reads Server-Sent Events from a response as they arrive (the
/// `text/event-stream` format: `field: value` lines, a blank line ends a
/// message, lines starting with `:` are comments).
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next message; `None` when the server closed the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<SseMessage>> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(message) = parse_sse_block(&block) {
                    return Ok(Some(message));
                }
            }
            match self.response.chunk().await? {
                Some(chunk) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n")),
                None => return Ok(None),
            }
        }
    }
}

/// A message from its lines; `None` for a block of comments only.
pub fn parse_sse_block(block: &str) -> Option<SseMessage> {
    let mut message = SseMessage::default();
    let mut data: Vec<&str> = Vec::new();
    let mut any = false;
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => message.id = Some(value.to_string()),
            "event" => message.event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    message.data = data.join("\n");
    any.then_some(message)
}

/// Follows a deploy's event stream until its terminal event, printing each
/// step as it moves (reconnecting with `Last-Event-ID` if the connection
/// drops), then prints the deploy.
async fn follow(client: &Client, id: &str, json_out: bool) -> anyhow::Result<ExitCode> {
    let d = follow_to_end(client, id, json_out).await?;
    print(json_out, &d, deploy_detail);
    Ok(if d["status"] == "completed" {
        ExitCode::SUCCESS
    } else {
        if !json_out {
            eprintln!("{}", ending(id, &d));
        }
        ExitCode::FAILURE
    })
}

/// Follows a deploy's event stream until its terminal event, printing each
/// step on stderr as it moves (unless `quiet`); answers the deploy's detail
/// as it ended.
pub(super) async fn follow_to_end(client: &Client, id: &str, quiet: bool) -> anyhow::Result<Value> {
    let json_out = quiet;
    let started = Instant::now();
    let mut stderr = std::io::stderr();
    let mut last: Option<String> = None;
    let stream = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    'connect: loop {
        let mut request = stream
            .get(client.endpoint(&format!("/api/deploys/{id}/events")))
            .bearer_auth(&client.token)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(last) = &last {
            request = request.header("Last-Event-ID", last);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                writeln!(stderr, "lost deployd at {} ({e}); reconnecting", client.url)?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            anyhow::bail!("{}", describe_problem(status, &body));
        }
        let mut reader = SseReader::new(response);
        loop {
            let message = match reader.next().await {
                Ok(Some(m)) => m,
                Ok(None) | Err(_) => {
                    // Closed early (the server stopping, or this client
                    // too slow): resume, unless the deploy has ended.
                    let d = client.get(&format!("/api/deploys/{id}"), &[]).await?;
                    if matches!(
                        d["status"].as_str(),
                        Some("completed" | "failed" | "cancelled")
                    ) {
                        break 'connect;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue 'connect;
                }
            };
            if message.id.is_some() {
                last = message.id.clone();
            }
            let event: Value = serde_json::from_str(&message.data).unwrap_or(Value::Null);
            let kind = message.event.as_deref().unwrap_or("");
            let data = &event["data"];
            let at = started.elapsed().as_secs_f64();
            let step = data["step"].as_str().unwrap_or("");
            let line = match kind {
                "DeployCreated" => Some("deploy pending".to_string()),
                "DeployStarted" => Some("deploy running".to_string()),
                "StepStarted" => Some(format!("  … {step:<8} running")),
                "StepCompleted" => Some(format!("  ✓ {step:<8} completed")),
                "StepFailed" => Some(format!(
                    "  ✗ {step:<8} failed: {}",
                    data["error"].as_str().unwrap_or("")
                )),
                "StepDiscarded" => Some(format!("  · {step:<8} discarded")),
                "DeployCompleted" => Some("deploy completed".to_string()),
                "DeployFailed" => Some("deploy failed".to_string()),
                "DeployCancelled" => Some("deploy cancelled".to_string()),
                _ => None,
            };
            if let (Some(line), false) = (line, json_out) {
                writeln!(stderr, "[{at:>6.1}s] {line}")?;
            }
            if matches!(kind, "DeployCompleted" | "DeployFailed" | "DeployCancelled") {
                break 'connect;
            }
        }
    }
    // The read model follows the log closely, not instantly.
    let mut d = client.get(&format!("/api/deploys/{id}"), &[]).await?;
    for _ in 0..100 {
        if matches!(
            d["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        d = client.get(&format!("/api/deploys/{id}"), &[]).await?;
    }
    Ok(d)
}

pub(super) fn client(url: &str, token: Option<String>) -> anyhow::Result<Client> {
    let token = match token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => token.to_string(),
        given => anyhow::bail!(
            "no token: DEPLOYD_TOKEN (or --token) is {}. Every request needs a bearer token; \
             make one where the server's database is with \
             `deployd token create --workspace ws_… --name YOU`, then \
             `export DEPLOYD_TOKEN=dpd_…`",
            if given.is_some() { "empty" } else { "not set" }
        ),
    };
    Ok(Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?,
        url: url.to_string(),
        token,
    })
}

/// The query of a list command: the given parameters only.
fn query(params: Vec<(&'static str, Option<String>)>) -> Vec<(&'static str, String)> {
    params
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// A page as a table and a line saying how many, and how to go on.
fn page_text(p: &Value, what: &str, rows: impl Fn(&[Value]) -> String) -> String {
    let data = p["data"].as_array().cloned().unwrap_or_default();
    let info = &p["pageInfo"];
    let mut out = rows(&data);
    out.push_str(&format!(
        "\n\n{} of {} {what}",
        data.len(),
        cell(&info["total"])
    ));
    if info["hasNextPage"] == true {
        out.push_str(&format!(
            "; next page: --after {}",
            cell(&info["endCursor"])
        ));
    }
    out
}

fn entity_rows(rows: &[Value]) -> String {
    table(
        &["ID", "NAME", "KIND", "POLICY", "LIVE", "SINCE", "PINNED"],
        &rows
            .iter()
            .map(|r| {
                vec![
                    cell(&r["id"]),
                    cell(&r["name"]),
                    cell(&r["kind"]),
                    cell(&r["deployPolicy"]),
                    cell(&r["live"]["deployId"]),
                    cell(&r["live"]["since"]),
                    if r["pinned"] == true {
                        format!("by {}", cell(&r["pinnedBy"]))
                    } else {
                        "no".into()
                    },
                ]
            })
            .collect::<Vec<_>>(),
    )
}

fn entity_detail(e: &Value) -> String {
    let mut out = String::new();
    for (label, value) in [
        ("id", &e["id"]),
        ("name", &e["name"]),
        ("kind", &e["kind"]),
        ("workspace", &e["workspaceId"]),
        ("version", &e["defaultVersionId"]),
        ("auto-deploy", &e["autoDeploy"]),
        ("policy", &e["deployPolicy"]),
        ("production", &e["productionUrl"]),
        ("live", &e["live"]["deployId"]),
        ("live build", &e["live"]["buildId"]),
        ("live since", &e["live"]["since"]),
        ("pinned", &e["pinned"]),
        ("pinned by", &e["pinnedBy"]),
        ("updated", &e["updatedAt"]),
    ] {
        out.push_str(&format!("{label:<11} {}\n", cell(value)));
    }
    out.trim_end().to_string()
}

fn build_rows(rows: &[Value]) -> String {
    table(
        &[
            "ID", "ENTITY", "STATUS", "VERSION", "BRANCH", "COMMIT", "CREATED",
        ],
        &rows
            .iter()
            .map(|r| {
                [
                    "id",
                    "entityId",
                    "status",
                    "versionId",
                    "branch",
                    "commitSha",
                    "createdAt",
                ]
                .iter()
                .map(|k| cell(&r[*k]))
                .collect()
            })
            .collect::<Vec<_>>(),
    )
}

/// A rollback or promotion as asked at the terminal.
/// What `rollback` and `promote` take.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    pub id: String,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Follow the new deploy until it ends.
    #[arg(long)]
    pub wait: bool,
}

/// `action` is `rollback` or `promote` (the path's last part).
async fn release(
    client: &Client,
    action: &str,
    ask: ReleaseArgs,
    json_out: bool,
) -> anyhow::Result<ExitCode> {
    let body = match ask.reason {
        Some(r) => json!({ "reason": r }),
        None => json!({}),
    };
    let path = format!("/api/deploys/{}/{action}", ask.id);
    let mut request = client.http.post(client.endpoint(&path)).json(&body);
    if let Some(key) = ask.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let created = client.send(request).await?;
    let new = created["id"].as_str().unwrap_or_default().to_string();
    if ask.wait {
        if !json_out {
            eprintln!("created {new} ({action} of {})", ask.id);
        }
        return follow(client, &new, json_out).await;
    }
    print(json_out, &created, |c| deploy_rows(std::slice::from_ref(c)));
    Ok(ExitCode::SUCCESS)
}

/// `deployd apps …`
pub async fn run_apps(args: AppsArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let client = client(&c.url, c.token.clone())?;
    match args.command {
        AppsCommand::List {
            workspace,
            limit,
            after,
        } => {
            let q = query(vec![
                ("workspace_id", workspace),
                ("limit", limit.map(|l| l.to_string())),
                ("after", after),
            ]);
            let page = client.get("/api/entities", &q).await?;
            print(c.json, &page, |p| {
                page_text(p, "apps and functions", entity_rows)
            });
        }
        AppsCommand::Get { id, as_of } => {
            let q = query(vec![("asOf", as_of)]);
            let e = client.get(&format!("/api/entities/{id}"), &q).await?;
            print(c.json, &e, entity_detail);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `deployd builds …`
pub async fn run_builds(args: BuildsArgs) -> anyhow::Result<ExitCode> {
    let c = &args.connection;
    let client = client(&c.url, c.token.clone())?;
    match args.command {
        BuildsCommand::List {
            app,
            status,
            limit,
            after,
        } => {
            let q = query(vec![
                ("entity_id", app),
                ("status", status),
                ("limit", limit.map(|l| l.to_string())),
                ("after", after),
            ]);
            let page = client.get("/api/builds", &q).await?;
            print(c.json, &page, |p| page_text(p, "builds", build_rows));
        }
        BuildsCommand::Get { id } => {
            let b = client.get(&format!("/api/builds/{id}"), &[]).await?;
            print(c.json, &b, |b| build_rows(std::slice::from_ref(b)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.connection.url, args.connection.token.clone())?;
    let json_out = args.connection.json;
    match args.command {
        DeploysCommand::List(list) => {
            let page = client.get("/api/deploys", &list.query()).await?;
            print(json_out, &page, |p| {
                let rows = p["data"].as_array().cloned().unwrap_or_default();
                let info = &p["pageInfo"];
                let mut out = deploy_rows(&rows);
                out.push_str(&format!(
                    "\n\n{} of {} deploys",
                    rows.len(),
                    cell(&info["total"])
                ));
                if let (true, Some(cursor)) =
                    (info["hasNextPage"] == true, info["endCursor"].as_str())
                {
                    out.push_str(&format!(
                        "\nnext page:     {}",
                        list.command_for("--after", cursor)
                    ));
                }
                if let (true, Some(cursor)) = (
                    info["hasPreviousPage"] == true,
                    info["startCursor"].as_str(),
                ) {
                    out.push_str(&format!(
                        "\nprevious page: {}",
                        list.command_for("--before", cursor)
                    ));
                }
                out
            });
        }
        DeploysCommand::Get { id } => {
            let d = client.get(&format!("/api/deploys/{id}"), &[]).await?;
            print(json_out, &d, deploy_detail);
        }
        DeploysCommand::Create {
            app,
            build,
            metadata,
            idempotency_key,
            wait,
        } => {
            let mut body = json!({});
            if let Some(app) = app {
                body["appId"] = json!(app);
            }
            if let Some(build) = build {
                body["buildId"] = json!(build);
            }
            if let Some(metadata) = metadata {
                body["metadata"] = serde_json::from_str(&metadata)
                    .map_err(|e| anyhow::anyhow!("--metadata is not JSON: {e}"))?;
            }
            let mut request = client
                .http
                .post(client.endpoint("/api/deploys"))
                .json(&body);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            let created = client.send(request).await?;
            let id = created["id"].as_str().unwrap_or_default().to_string();
            if wait {
                if !json_out {
                    eprintln!("created {id} (#{})", cell(&created["sequenceNumber"]));
                }
                return follow(&client, &id, json_out).await;
            }
            print(json_out, &created, |c| deploy_rows(std::slice::from_ref(c)));
        }
        DeploysCommand::Cancel { id, reason } => {
            let body = match reason {
                Some(r) => json!({ "reason": r }),
                None => json!({}),
            };
            let request = client
                .http
                .post(client.endpoint(&format!("/api/deploys/{id}/cancel")))
                .json(&body);
            let answer = client.send(request).await?;
            print(json_out, &answer, |_| format!("cancelled {id}"));
        }
        DeploysCommand::Rollback(ask) => return release(&client, "rollback", ask, json_out).await,
        DeploysCommand::Promote(ask) => return release(&client, "promote", ask, json_out).await,
        DeploysCommand::Watch { id } => return follow(&client, &id, json_out).await,
        DeploysCommand::Events { id } => {
            let events = client
                .get(&format!("/api/deploys/{id}/events"), &[])
                .await?;
            print(json_out, &events, |e| {
                let rows: Vec<Vec<String>> = e
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        vec![
                            cell(&e["sequence"]),
                            cell(&e["type"]),
                            cell(&e["recordedAt"]),
                            cell(&e["actor"]),
                            e["data"].to_string(),
                        ]
                    })
                    .collect();
                table(&["#", "TYPE", "RECORDED", "ACTOR", "DATA"], &rows)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_deploy_ends_with_its_reason_and_who_cancelled_it() {
        let d = json!({"status": "cancelled", "error": null,
            "cancellation": {"reason": "wrong branch", "cancelledBy": "alice"}});
        assert_eq!(
            ending("dep_1", &d),
            "deploy dep_1 cancelled by alice: wrong branch"
        );
        let d =
            json!({"status": "cancelled", "cancellation": {"reason": null, "cancelledBy": "bob"}});
        assert_eq!(
            ending("dep_1", &d),
            "deploy dep_1 cancelled by bob (no reason given)"
        );
        let d = json!({"status": "failed", "error": "prepare: boom"});
        assert_eq!(ending("dep_1", &d), "deploy dep_1 failed: prepare: boom");
    }

    #[test]
    fn the_next_page_command_keeps_every_filter_and_quotes_for_the_shell() {
        let list = ListArgs {
            status: Some("failed".into()),
            created_by: Some("alice".into()),
            filter: Some(r#"{"build":{"branch":{"eq":"it's"}}}"#.into()),
            limit: Some(2),
            after: Some("old".into()),
            ..ListArgs::default()
        };
        assert_eq!(
            list.command_for("--after", "abc_DEF-1"),
            r#"deployd deploys list --status failed --created-by alice --filter '{"build":{"branch":{"eq":"it'\''s"}}}' --limit 2 --after abc_DEF-1"#
        );
    }

    #[test]
    fn one_bad_part_is_said_once() {
        let body = json!({"title": "Invalid request", "detail": "after: not a cursor",
            "errors": [{"pointer": "after", "message": "not a cursor"}]});
        assert_eq!(
            describe_problem(reqwest::StatusCode::BAD_REQUEST, &body),
            "400 Invalid request: after: not a cursor"
        );
        let body = json!({"title": "Invalid request", "detail": "2 parts of the request are invalid",
            "errors": [{"pointer": "a", "message": "x"}, {"pointer": "b", "message": "y"}]});
        assert_eq!(
            describe_problem(reqwest::StatusCode::BAD_REQUEST, &body),
            "400 Invalid request: 2 parts of the request are invalid\n  a: x\n  b: y"
        );
    }

    #[test]
    fn an_sse_block_reads_as_its_fields_and_a_comment_as_nothing() {
        let m = parse_sse_block("id: 3\nevent: StepStarted\ndata: {\"a\":1}\ndata: x\n\n").unwrap();
        assert_eq!(m.id.as_deref(), Some("3"));
        assert_eq!(m.event.as_deref(), Some("StepStarted"));
        assert_eq!(m.data, "{\"a\":1}\nx");
        assert_eq!(parse_sse_block(":heartbeat\n\n"), None);
    }

    #[test]
    fn tables_align_their_columns() {
        let out = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(out, "A    LONGER\nxyz  1");
    }
}
