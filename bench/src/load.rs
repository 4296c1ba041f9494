//! The load generator: closed-loop MCP clients, one HTTP/1.1 keep-alive connection each,
//! sending `tools/call echo` and checking every answer.
//!
//! Written for the benchmark rather than taken off the shelf (oha, wrk) because a correct MCP
//! client must initialize a session per connection, send the 2026-07-28 `_meta` and headers,
//! and read SSE as well as JSON answers; an answer that is not the echoed text counts as an
//! error, never as throughput. It runs on one thread (the benchmark pins it to its own core).

use std::net::SocketAddr;
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
    warmup: Duration,
    duration: Duration,
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
            tally.into_outcome()
        }));
    }
    summarize(tasks, concurrency, duration).await
}

/// Offer `rate` requests per second (open loop) from `connections` clients for `duration`,
/// after `warmup`. Each client keeps its own schedule. When a client's previous answer came
/// back after the next request was due, the server made it late, and that request's latency
/// counts from when it was due (no coordinated omission); otherwise it counts from when it was
/// sent, so the timer's millisecond granularity is not charged to the server.
pub(crate) async fn run_open(
    target: &Target,
    rate: f64,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Measured {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let mut tasks = Vec::new();
    for k in 0..connections {
        let t = target.clone();
        // Stagger the clients evenly over one interval.
        let first = start + interval.mul_f64(k as f64 / connections as f64);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = match t.connect().await {
                Ok(c) => Some(c),
                Err(e) => {
                    tally.record(Err(e.context("connect")), Duration::ZERO, true);
                    return tally.into_outcome();
                }
            };
            let mut due = first;
            let mut previous_answer = start;
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                let Some(c) = conn.as_mut() else { break };
                let from = if previous_answer > due {
                    due
                } else {
                    Instant::now()
                };
                let r = t.call(c).await;
                previous_answer = Instant::now();
                let took = previous_answer - from;
                if tally.record(r, took, due >= measure_from) {
                    conn = t.connect().await.ok();
                }
                due += interval;
            }
            tally.into_outcome()
        }));
    }
    summarize(tasks, connections, duration).await
}

type Outcome = (Vec<u32>, u64, Option<String>);

/// One client's latencies and errors.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
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

    fn into_outcome(self) -> Outcome {
        (self.latencies, self.errors, self.first_error)
    }
}

async fn summarize(
    tasks: Vec<tokio::task::JoinHandle<Outcome>>,
    concurrency: usize,
    duration: Duration,
) -> Measured {
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        if let Ok((l, e, f)) = t.await {
            all.extend(l);
            errors += e;
            if first_error.is_none() {
                first_error = f;
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
    Measured {
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
