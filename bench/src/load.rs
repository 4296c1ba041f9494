//! The load generator: closed-loop MCP clients, one HTTP/1.1 keep-alive connection each,
//! sending `tools/call echo` and checking every answer.
//!
//! Written for the benchmark rather than taken off the shelf (oha, wrk) because a correct MCP
//! client must initialize a session per connection, send the 2026-07-28 `_meta` and headers,
//! and read SSE as well as JSON answers; an answer that is not the echoed text counts as an
//! error, never as throughput. It runs on one thread (the benchmark pins it to its own core).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use serde::Serialize;
use serde_json::{Value, json};

/// How a client speaks to a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum Protocol {
    /// Independent 2026-07-28 requests (stateless by protocol).
    Modern,
    /// Independent 2025-11-25 requests to a server in its stateless mode (no session).
    Stateless2025,
    /// A 2025-11-25 session per connection: `initialize` first, then `Mcp-Session-Id`.
    Session,
}

/// Where and how to send load.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: Protocol,
    pub(crate) authorization: Option<String>,
}

/// One measured point.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Measured {
    pub(crate) concurrency: usize,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) req_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) mean_us: f64,
    /// Open loop: the rate offered (closed loop: 0).
    pub(crate) offered_per_s: f64,
    /// Open loop: requests due in the window that no client could start before it closed
    /// (the server could not keep up; they are not in the latencies).
    pub(crate) unserved: u64,
    /// The server's CPU time per answered request (all its threads), in µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu_us_per_req: Option<f64>,
    /// The share of its one core the server used while measured (1.0 = saturated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_cpu: Option<f64>,
    /// The share of its core the load generator used (near 1.0: the client, not the server,
    /// limited the point).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_cpu: Option<f64>,
    /// The first error seen, to explain a failed point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

struct Conn {
    send: SendRequest<Full<Bytes>>,
    session: Option<String>,
    next_id: u64,
}

const VERSION_2025: &str = "2025-11-25";
const VERSION_2026: &str = "2026-07-28";

impl Target {
    fn request(&self, body: &Value, session: Option<&str>) -> http::Request<Full<Bytes>> {
        let version = match self.protocol {
            Protocol::Modern => VERSION_2026,
            _ => VERSION_2025,
        };
        let mut b = http::Request::post("/mcp")
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", version);
        if self.protocol == Protocol::Modern
            && let Some(method) = body["method"].as_str()
        {
            b = b.header("mcp-method", method);
            if let Some(name) = body["params"]["name"].as_str() {
                b = b.header("mcp-name", name);
            }
        }
        if let Some(s) = session {
            b = b.header("mcp-session-id", s);
        }
        if let Some(a) = &self.authorization {
            b = b.header("authorization", a);
        }
        b.body(Full::new(Bytes::from(body.to_string())))
            .expect("a valid request")
    }

    fn call_body(&self, id: u64, text: &str) -> Value {
        let mut params = json!({"name": "echo", "arguments": {"text": text}});
        if self.protocol == Protocol::Modern {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": VERSION_2026,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "portcullis-bench", "version": "1"},
            });
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
    }

    async fn connect(&self) -> anyhow::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let io = hyper_io::Io(stream);
        let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut c = Conn {
            send,
            session: None,
            next_id: 1,
        };
        if self.protocol == Protocol::Session {
            let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": VERSION_2025, "capabilities": {},
                "clientInfo": {"name": "portcullis-bench", "version": "1"}}});
            let resp = c.send.send_request(self.request(&init, None)).await?;
            let session = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| {
                    anyhow::anyhow!("initialize answered {} without a session id", resp.status())
                })?;
            resp.into_body().collect().await?;
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            let resp = c
                .send
                .send_request(self.request(&note, Some(&session)))
                .await?;
            resp.into_body().collect().await?;
            c.session = Some(session);
        }
        Ok(c)
    }

    /// One echo call; `Err` unless the answer carries the echoed text.
    async fn call(&self, c: &mut Conn) -> anyhow::Result<()> {
        let id = c.next_id;
        c.next_id += 1;
        let text = format!("hello-{id}");
        let req = self.request(&self.call_body(id, &text), c.session.as_deref());
        let resp = c.send.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let body = std::str::from_utf8(&body).unwrap_or_default();
        anyhow::ensure!(
            status == 200,
            "HTTP {status}: {}",
            body.chars().take(300).collect::<String>()
        );
        anyhow::ensure!(
            body.contains("\"result\"") && body.contains(&format!("\"{text}\"")),
            "unexpected answer: {}",
            body.chars().take(300).collect::<String>()
        );
        Ok(())
    }

    /// Check the server answers one call correctly.
    pub(crate) async fn probe(&self) -> anyhow::Result<()> {
        let mut c = self.connect().await?;
        self.call(&mut c).await
    }
}

/// Run `concurrency` closed-loop clients for `warmup`, then measure for `duration`.
pub(crate) async fn run(
    target: &Target,
    concurrency: usize,
    (warmup, duration): (Duration, Duration),
    meter: &CpuMeter,
) -> Measured {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let t = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = None;
            while Instant::now() < end {
                if conn.is_none() {
                    match t.connect().await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            tally.record(Err(e.context("connect")), Duration::ZERO, true);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let c = conn.as_mut().expect("connected");
                let sent = Instant::now();
                let r = t.call(c).await;
                let took = sent.elapsed();
                let counted = sent >= measure_from && Instant::now() <= end;
                if tally.record(r, took, counted) {
                    conn = None;
                }
            }
            tally
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let before = meter.sample();
    tokio::time::sleep_until(end.into()).await;
    let used = meter.sample().since(&before, duration);
    summarize(tasks, concurrency, duration, Some(used)).await
}

/// Offer `rate` requests per second (open loop) for `duration`, after `warmup`, through
/// `connections` clients.
///
/// One pacer issues arrivals at exact intervals (it sleeps until a millisecond before each is
/// due, then yields until it is due, since Tokio's timer only has millisecond granularity and
/// would release requests in bursts) and hands them to whichever client is free. Latency
/// counts from when a request was due, so time spent waiting for a free client or a slow
/// server is charged to the server (no coordinated omission).
pub(crate) async fn run_open(
    target: &Target,
    rate: f64,
    connections: usize,
    (warmup, duration): (Duration, Duration),
    meter: &CpuMeter,
) -> Measured {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let measure_from = Instant::now() + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (t, rx) = (target.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = None;
            loop {
                let Some(due) = rx.lock().await.recv().await else {
                    break;
                };
                if Instant::now() > end {
                    // The window has closed: an overloaded server's backlog is not drained.
                    tally.unserved += u64::from(due >= measure_from);
                    continue;
                }
                if conn.is_none() {
                    match t.connect().await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            tally.record(Err(e.context("connect")), Duration::ZERO, true);
                            continue;
                        }
                    }
                }
                let r = t.call(conn.as_mut().expect("connected")).await;
                if tally.record(r, due.elapsed(), due >= measure_from) {
                    conn = None;
                }
            }
            tally
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let mut due = Instant::now();
    let mut before = None;
    while due < end {
        let now = Instant::now();
        if before.is_none() && now >= measure_from {
            before = Some(meter.sample());
        }
        if now >= due {
            let _ = tx.send(due);
            due += interval;
        } else if due - now > Duration::from_millis(2) {
            tokio::time::sleep(due - now - Duration::from_millis(1)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    drop(tx);
    let used = before.map(|b| meter.sample().since(&b, duration));
    let mut m = summarize(tasks, connections, duration, used).await;
    m.offered_per_s = rate;
    // The pacer spins: the client's core is busy by design here.
    m.client_cpu = None;
    m
}

/// On-CPU time of the server process (every thread, including exited ones) and of this
/// process, read from `/proc` (Linux; elsewhere nothing is reported).
#[derive(Clone, Debug)]
pub(crate) struct CpuMeter {
    server_pid: Option<u32>,
}

/// USER_HZ, the unit of `/proc/<pid>/stat` times: 100 on every Linux configuration in use;
/// `getconf` (asked once per run) says if not.
fn ticks_per_s() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// One reading of a [`CpuMeter`].
pub(crate) struct CpuSample {
    at: Instant,
    server: Option<f64>,
    client: Option<f64>,
}

/// CPU used between two samples.
#[derive(Default)]
pub(crate) struct CpuUsed {
    server_secs: Option<f64>,
    server_share: Option<f64>,
    client_share: Option<f64>,
}

impl CpuMeter {
    pub(crate) fn new(server_pid: Option<u32>) -> Self {
        Self { server_pid }
    }

    /// utime + stime of `pid` in seconds (`/proc/<pid>/stat` fields 14 and 15).
    fn cpu_secs(&self, pid: &str) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / ticks_per_s())
    }

    pub(crate) fn sample(&self) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            server: self.server_pid.and_then(|p| self.cpu_secs(&p.to_string())),
            client: self.cpu_secs("self"),
        }
    }
}

impl CpuSample {
    /// What was used since `before`; `nominal` is the window's intended length.
    fn since(&self, before: &CpuSample, nominal: Duration) -> CpuUsed {
        let wall = (self.at - before.at)
            .as_secs_f64()
            .max(nominal.as_secs_f64() / 2.0);
        let server_secs = self.server.zip(before.server).map(|(a, b)| a - b);
        CpuUsed {
            server_secs,
            server_share: server_secs.map(|s| s / wall),
            client_share: self.client.zip(before.client).map(|(a, b)| (a - b) / wall),
        }
    }
}

/// One client's latencies and errors.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
    /// Open loop: requests still waiting for a free client when the window closed.
    unserved: u64,
    first_error: Option<String>,
}

impl Tally {
    /// Count one call's result (only if `counted`: inside the measured window); returns
    /// whether it failed, so the caller reconnects.
    fn record(&mut self, r: anyhow::Result<()>, took: Duration, counted: bool) -> bool {
        match r {
            Ok(()) => {
                if counted {
                    self.latencies
                        .push(took.as_micros().min(u128::from(u32::MAX)) as u32);
                }
                false
            }
            Err(e) => {
                if counted {
                    self.errors += 1;
                }
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
                true
            }
        }
    }
}

async fn summarize(
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
    concurrency: usize,
    duration: Duration,
    cpu: Option<CpuUsed>,
) -> Measured {
    let mut all = Vec::new();
    let mut errors = 0;
    let mut unserved = 0;
    let mut first_error = None;
    for t in tasks {
        if let Ok(t) = t.await {
            all.extend(t.latencies);
            errors += t.errors;
            unserved += t.unserved;
            if first_error.is_none() {
                first_error = t.first_error;
            }
        }
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[i])
    };
    let seconds = duration.as_secs_f64();
    let cpu = cpu.unwrap_or_default();
    Measured {
        server_cpu_us_per_req: cpu
            .server_secs
            .filter(|_| !all.is_empty())
            .map(|s| s * 1e6 / all.len() as f64),
        server_cpu: cpu.server_share,
        unserved,
        offered_per_s: 0.0,
        client_cpu: cpu.client_share,
        concurrency,
        requests: all.len() as u64,
        errors,
        seconds,
        req_per_s: all.len() as f64 / seconds,
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        mean_us: if all.is_empty() {
            0.0
        } else {
            all.iter().map(|&x| f64::from(x)).sum::<f64>() / all.len() as f64
        },
        first_error,
    }
}

/// hyper's I/O traits for a Tokio stream (what hyper-util's `TokioIo` does, without the
/// extra crate).
mod hyper_io {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    pub(super) struct Io(pub(super) tokio::net::TcpStream);

    impl hyper::rt::Read for Io {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            mut buf: hyper::rt::ReadBufCursor<'_>,
        ) -> Poll<std::io::Result<()>> {
            // Read into a stack buffer no larger than hyper's cursor, then copy it over
            // (hyper-util's adapter avoids the copy with unsafe code; this crate has none).
            let mut tmp = [0u8; 16 * 1024];
            let n = buf.remaining().min(tmp.len());
            let mut rb = ReadBuf::new(&mut tmp[..n]);
            match Pin::new(&mut self.0).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    buf.put_slice(rb.filled());
                    Poll::Ready(Ok(()))
                }
                other => other,
            }
        }
    }

    impl hyper::rt::Write for Io {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }
}
