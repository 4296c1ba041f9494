//! SSE polling (SEP-1699) for 2025-11-25 sessions: a call's event stream is cut after
//! `server.sse_close_after_ms`, and whatever the call sends after the cut is kept here until
//! the session's caller resumes the stream with `GET` and `Last-Event-ID`.
//!
//! rmcp forgets a request's stream once its answer is sent, so a result that completed while
//! the client was away could not be resumed from rmcp. Here the gateway goes on reading the
//! cut stream itself and answers the resumption.
//!
//! Owns: the cut, the kept remainder of each cut stream (bounded in bytes, in count and in
//! time), and the answer to a resumption naming a kept stream. Must not: decide who owns a
//! session (`sessions`; the front has checked the caller before a resumption reaches here),
//! or know rmcp beyond the SSE it writes (event ids `index/stream`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use parking_lot::Mutex;

use crate::auth::CallerId;

/// The most a cut stream may send while its client is away (answers past it are dropped, and
/// the client's resumption goes to rmcp, which answers it has nothing).
const MAX_KEPT_BYTES: usize = 8 << 20;
/// The most cut streams kept at once for one tenant.
const MAX_KEPT_STREAMS: usize = 4096;
/// How long the rest of a finished stream waits for its client.
const KEPT_FOR: Duration = Duration::from_secs(60);

/// One tenant's cut streams.
pub(crate) struct Polling {
    tenant: Arc<str>,
    /// How long a call's stream (and each resumption of it) stays open.
    after: Duration,
    kept: Mutex<HashMap<(String, u64), Arc<Kept>>>,
}

/// What a cut stream sent after the cut.
struct Kept {
    owner: CallerId,
    state: Mutex<KeptState>,
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct KeptState {
    /// Whole SSE events (with their index) not yet known to be delivered.
    events: VecDeque<(usize, Bytes)>,
    bytes: usize,
    /// When the call's stream ended (nothing more will come).
    ended: Option<Instant>,
}

/// An SSE event id as rmcp writes it for a request's stream: `index/stream`.
fn event_id(id: &str) -> Option<(usize, u64)> {
    let (index, stream) = id.split_once('/')?;
    Some((index.parse().ok()?, stream.parse().ok()?))
}

/// The id of one whole SSE event (`id:` field), if it has one.
fn id_of(event: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(event).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("id:"))
        .and_then(|v| event_id(v.trim()))
}

/// Splits a byte stream into whole SSE events (each ending with its blank line).
#[derive(Default)]
struct Framer(BytesMut);

impl Framer {
    fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.0.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.0.windows(2).position(|w| w == b"\n\n") {
            out.push(self.0.split_to(end + 2).freeze());
        }
        out
    }

    fn pending(&self) -> usize {
        self.0.len()
    }
}

impl Polling {
    pub(crate) fn new(tenant: Arc<str>, after: Duration) -> Arc<Self> {
        Arc::new(Self {
            tenant,
            after,
            kept: Mutex::default(),
        })
    }

    /// `resp` (a call's answer in session `session` of `owner`) with its event stream ended
    /// after the polling interval; what the call sends later is kept for a resumption. A lone
    /// JSON answer is left alone.
    pub(crate) fn cut(
        self: &Arc<Self>,
        resp: Response,
        session: &str,
        owner: CallerId,
    ) -> Response {
        if !super::jsonrpc::is_event_stream(&resp) {
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let (tx, rx) = futures::channel::mpsc::channel::<Bytes>(16);
        let this = self.clone();
        let session = session.to_string();
        tokio::spawn(async move {
            this.pump(body, tx, session, owner).await;
        });
        Response::from_parts(
            parts,
            Body::from_stream(rx.map(Ok::<_, std::convert::Infallible>)),
        )
    }

    /// Forward whole events to the client until the cut (or until it goes), then keep them.
    async fn pump(
        self: Arc<Self>,
        body: Body,
        mut client: futures::channel::mpsc::Sender<Bytes>,
        session: String,
        owner: CallerId,
    ) {
        use futures::SinkExt as _;
        let mut inner = body.into_data_stream();
        let mut framer = Framer::default();
        let mut stream = None;
        let deadline = tokio::time::sleep(self.after);
        tokio::pin!(deadline);
        // Until the cut: to the client.
        let mut rest = Vec::new();
        loop {
            let chunk = tokio::select! {
                () = &mut deadline => break,
                chunk = inner.next() => chunk,
            };
            let Some(Ok(chunk)) = chunk else {
                return; // The call's stream ended in time: nothing to keep.
            };
            let events = framer.push(&chunk);
            if let Some((_, s)) = events.iter().find_map(|e| id_of(e)) {
                stream.get_or_insert(s);
            }
            let mut events = events.into_iter();
            for event in events.by_ref() {
                if client.send(event.clone()).await.is_err() {
                    rest.push(event);
                    break;
                }
            }
            rest.extend(events);
            if !rest.is_empty() {
                break; // The client went: keep the rest.
            }
        }
        drop(client);
        // A stream whose events carry no ids cannot be resumed: nothing to keep for it.
        let Some(stream) = stream else { return };
        let Some(kept) = self.keep(&session, stream, owner) else {
            return;
        };
        for event in rest {
            if !self.append(&kept, &session, stream, event) {
                return;
            }
        }
        while let Some(Ok(chunk)) = inner.next().await {
            for event in framer.push(&chunk) {
                if !self.append(&kept, &session, stream, event) {
                    return;
                }
            }
            if framer.pending() > MAX_KEPT_BYTES {
                self.overflow(&session, stream);
                return;
            }
        }
        kept.state.lock().ended = Some(Instant::now());
        kept.changed.notify_waiters();
    }

    /// Start keeping stream `stream` of `session` (refused when too many are kept).
    fn keep(&self, session: &str, stream: u64, owner: CallerId) -> Option<Arc<Kept>> {
        let mut kept = self.kept.lock();
        let now = Instant::now();
        kept.retain(|_, k| k.state.lock().ended.is_none_or(|at| now - at < KEPT_FOR));
        if kept.len() >= MAX_KEPT_STREAMS {
            tracing::warn!(tenant = %self.tenant, max = MAX_KEPT_STREAMS,
                "a call's stream was cut and cannot be kept for its client (too many cut streams wait to be resumed); its client will not get the rest");
            return None;
        }
        let entry = Arc::new(Kept {
            owner,
            state: Mutex::default(),
            changed: tokio::sync::Notify::new(),
        });
        kept.insert((session.to_string(), stream), entry.clone());
        Some(entry)
    }

    /// Keep one more event of a cut stream; false (and the stream dropped) past the bound.
    fn append(&self, kept: &Kept, session: &str, stream: u64, event: Bytes) -> bool {
        if event.iter().all(|b| b.is_ascii_whitespace()) || event.starts_with(b":") {
            return true; // A keep-alive comment: nobody needs it later.
        }
        let Some((index, _)) = id_of(&event) else {
            return true;
        };
        {
            let mut state = kept.state.lock();
            state.bytes += event.len();
            if state.bytes > MAX_KEPT_BYTES {
                drop(state);
                self.overflow(session, stream);
                return false;
            }
            state.events.push_back((index, event));
        }
        kept.changed.notify_waiters();
        true
    }

    fn overflow(&self, session: &str, stream: u64) {
        tracing::warn!(tenant = %self.tenant, max_bytes = MAX_KEPT_BYTES,
            "a cut stream sent more than can be kept while its client is away; dropped (the client's resumption gets nothing)");
        self.kept.lock().remove(&(session.to_string(), stream));
    }

    /// The answer to `GET` with `Last-Event-ID: last` in `session` by `caller`, when it names a
    /// stream kept here: its events after `last`, then (while the call runs) what it sends
    /// next, until the call ends or the polling interval passes. `None`: not a kept stream.
    pub(crate) fn resume(
        self: &Arc<Self>,
        session: &str,
        caller: &CallerId,
        last: &str,
    ) -> Option<Response> {
        let (after, stream) = event_id(last)?;
        let key = (session.to_string(), stream);
        let kept = self.kept.lock().get(&key).cloned()?;
        if kept.owner != *caller {
            return None;
        }
        let deadline = tokio::time::Instant::now() + self.after;
        let this = Replay {
            polling: self.clone(),
            key,
            kept,
            next: after + 1,
            deadline,
        };
        let body = futures::stream::unfold(this, Replay::next_event);
        Some(
            Response::builder()
                .header(http::header::CONTENT_TYPE, "text/event-stream")
                .header(http::header::CACHE_CONTROL, "no-cache")
                .body(Body::from_stream(
                    body.map(Ok::<_, std::convert::Infallible>),
                ))
                .expect("static headers"),
        )
    }

    /// Session `session` ended: nothing of it is resumed.
    pub(crate) fn forget(&self, session: &str) {
        self.kept.lock().retain(|(s, _), _| s != session);
    }
}

/// One resumption of a kept stream.
struct Replay {
    polling: Arc<Polling>,
    key: (String, u64),
    kept: Arc<Kept>,
    next: usize,
    deadline: tokio::time::Instant,
}

impl Replay {
    async fn next_event(mut self) -> Option<(Bytes, Self)> {
        let kept = self.kept.clone();
        loop {
            let changed = kept.changed.notified();
            {
                let state = kept.state.lock();
                if let Some((index, event)) = state.events.iter().find(|(i, _)| *i >= self.next) {
                    self.next = index + 1;
                    let event = event.clone();
                    drop(state);
                    return Some((event, self));
                }
                if state.ended.is_some() {
                    // Delivered to its end: nothing of it is resumed again.
                    drop(state);
                    self.polling.kept.lock().remove(&self.key);
                    return None;
                }
            }
            if tokio::time::timeout_at(self.deadline, changed)
                .await
                .is_err()
            {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::CallerName;

    fn caller(sub: &str) -> CallerId {
        CallerId {
            issuer: Some(Arc::from("https://as")),
            name: CallerName::Subject(sub.into()),
        }
    }

    fn event(index: usize, data: &str) -> Bytes {
        Bytes::from(format!("id: {index}/3\ndata: {data}\n\n"))
    }

    /// A call's event stream the test writes into, as rmcp's answer.
    fn answer() -> (futures::channel::mpsc::UnboundedSender<Bytes>, Response) {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
        let resp = Response::builder()
            .header(http::header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(rx.map(Ok::<_, std::convert::Infallible>)))
            .unwrap();
        (tx, resp)
    }

    async fn kept_streams(p: &Polling, want: usize) -> usize {
        for _ in 0..200 {
            if p.kept.lock().len() == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        p.kept.lock().len()
    }

    #[tokio::test]
    async fn events_after_the_cut_are_kept_for_the_owner_only_and_bounded() {
        let p = Polling::new(Arc::from("t"), Duration::from_millis(50));
        let (tx, resp) = answer();
        tx.unbounded_send(event(0, "")).unwrap();
        let cut = p.cut(resp, "s1", caller("alice"));
        let seen = axum::body::to_bytes(cut.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            seen,
            event(0, ""),
            "the client got what came before the cut"
        );
        tx.unbounded_send(Bytes::from_static(b": keep-alive\n\n"))
            .unwrap();
        tx.unbounded_send(event(1, "{\"result\":1}")).unwrap();
        assert_eq!(kept_streams(&p, 1).await, 1);
        assert!(
            p.resume("s1", &caller("mallory"), "0/3").is_none(),
            "not hers"
        );
        assert!(
            p.resume("s2", &caller("alice"), "0/3").is_none(),
            "another session"
        );
        assert!(
            p.resume("s1", &caller("alice"), "0/4").is_none(),
            "another stream"
        );
        drop(tx);
        let resumed = p.resume("s1", &caller("alice"), "0/3").unwrap();
        let body = axum::body::to_bytes(resumed.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            body,
            event(1, "{\"result\":1}"),
            "no keep-alive, nothing twice"
        );
        assert_eq!(
            kept_streams(&p, 0).await,
            0,
            "gone once delivered to its end"
        );

        // A stream that sends more than the bound while its client is away is dropped.
        let (tx, resp) = answer();
        tx.unbounded_send(event(0, "")).unwrap();
        let cut = p.cut(resp, "s1", caller("alice"));
        axum::body::to_bytes(cut.into_body(), usize::MAX)
            .await
            .unwrap();
        let big = "x".repeat(1 << 20);
        tx.unbounded_send(event(1, &big)).unwrap();
        assert_eq!(kept_streams(&p, 1).await, 1);
        for i in 2..12 {
            tx.unbounded_send(event(i, &big)).unwrap();
        }
        assert_eq!(kept_streams(&p, 0).await, 0, "past {MAX_KEPT_BYTES} bytes");
    }
}
