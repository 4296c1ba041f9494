//! The HTTP listener: accepts connections and serves them under explicit limits, so a slow or
//! hostile client holds nothing for long and no client address can take every connection.
//!
//! Owns: the accept loop; the connection caps (overall and per client address: a connection
//! over either gets `503` and is closed); the header-read timeout (a request head, including
//! the wait for the next request on an idle keep-alive connection, must arrive within it, else
//! the connection is closed); the body-read timeout (a request body must finish within it from
//! the request's start, else reading it fails with [`BodyTimeout`], answered `408`); the idle
//! timeout (a connection, HTTP/1 or HTTP/2, with no request in flight for that long is shut
//! down gracefully; a request is in flight until its response body has been sent or dropped,
//! so long-lived event streams are not idle); the write timeout (a connection whose socket has
//! refused every byte of an answer for that long — the client stopped reading — is closed,
//! freeing what was buffered for it); HTTP/2 stream limits and keep-alive pings;
//! graceful shutdown. Must not: route, authenticate or read bodies itself (the router behind
//! it does).

use std::collections::HashMap;
use std::future::Future as _;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The limits connections are served under (from `[server]`).
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// A request head (or, on a kept-alive connection, the next one) must arrive within it.
    pub header_read: Duration,
    /// A request body must be read within it, counted from the request's start.
    pub body_read: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle: Duration,
    /// A connection whose client accepts no byte of an answer for this long is closed.
    pub write: Duration,
    /// Most open connections.
    pub max_connections: usize,
    /// Most open connections from one client address.
    pub max_per_client: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub h2_max_streams: u32,
    /// How long open connections may take to finish once shutdown begins.
    pub grace: Duration,
}

/// A request body that took longer than `server.body_read_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// Serve `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_client: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let admit = |tcp: TcpStream, peer: SocketAddr| {
        if let Err(e) = tcp.set_nodelay(true) {
            // Without it a response written in two segments waits for the delayed ACK.
            tracing::debug!("cannot set TCP_NODELAY on a connection: {e}");
        }
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(
                max = limits.max_connections,
                "refused a connection: server.max_connections reached"
            );
            tokio::spawn(refuse(tcp));
            return;
        };
        let network = crate::net::client_network(peer.ip());
        let Some(slot) = ClientSlot::take(&per_client, network, limits.max_per_client) else {
            tracing::warn!(client = %peer.ip(), max = limits.max_per_client,
                "refused a connection: server.max_connections_per_client reached");
            tokio::spawn(refuse(tcp));
            return;
        };
        let connection = serve_connection(tcp, peer, router.clone(), limits, shutdown.clone());
        tokio::spawn(async move {
            connection.await;
            drop((permit, slot));
        });
    };
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        admit(tcp, peer);
    }
    // Connections the kernel completed but nobody accepted yet would be reset when the
    // listener closes, with the request a balancer already sent on them: serve them too.
    while let Some(Ok((tcp, peer))) = futures::FutureExt::now_or_never(listener.accept()) {
        admit(tcp, peer);
    }
    // Closed now, not after the grace: a balancer that does not poll `/readyz` must get
    // "connection refused" (and try another replica) rather than a connection nobody serves.
    drop(listener);
    // Every connection holds a permit: all permits back means every connection has closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.grace, connections.acquire_many(all))
        .await
        .is_err()
    {
        let open = limits.max_connections - connections.available_permits();
        tracing::warn!(
            open,
            "connections still open after the shutdown grace period; closing them"
        );
    }
    Ok(())
}

/// Answer a connection over a cap with `503` and close it.
async fn refuse(mut tcp: TcpStream) {
    let answer = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
                   Content-Type: text/plain\r\nContent-Length: 37\r\n\r\ntoo many connections; retry shortly\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(answer)).await;
    let _ = tcp.shutdown().await;
}

/// One connection, served until it ends, a timeout closes it, or shutdown.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::default());
    let tracked = activity.clone();
    let service = tower::service_fn(move |req: http::Request<Incoming>| {
        let in_flight = InFlight::start(&tracked);
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        let req =
            http::Request::from_parts(parts, Body::new(TimedBody::new(body, limits.body_read)));
        let router = router.clone();
        async move {
            let response = tower::ServiceExt::oneshot(router, req).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| {
                Body::new(TrackedBody {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10))
        .enable_connect_protocol();
    let stall = Arc::new(Stall::new());
    let io = WatchedIo {
        inner: tcp,
        stall: stall.clone(),
    };
    let conn =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(client = %peer, "connection ended: {e}");
            }
            return;
        }
        () = stall.stalled_for(limits.write) => {
            // Dropping the connection closes the socket and frees the answer buffered for it.
            tracing::info!(client = %peer,
                "closed a connection whose client accepted no byte of its answer for {:?} (server.write_timeout_ms)",
                limits.write);
            return;
        }
        () = activity.idle_for(limits.idle) => {
            tracing::debug!(client = %peer, "closing a connection idle for {:?}", limits.idle);
            conn.as_mut().graceful_shutdown();
            // An HTTP/2 client must answer the shutdown's PING like it would send a request
            // head; one that does not is dropped then.
            let _ = tokio::time::timeout(limits.header_read.min(limits.grace), conn).await;
            return;
        }
        () = shutdown.cancelled() => {
            // A connection whose first request has not started may carry one a balancer sent
            // just before the listener closed: closing it now would reset that request. It
            // gets a moment for it; then, as every connection, no further keep-alive.
            if activity.started.load(std::sync::atomic::Ordering::Acquire) == 0 {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(client = %peer, "connection ended: {e}");
                        }
                        return;
                    }
                    () = activity.first_request() => {}
                    () = tokio::time::sleep(limits.header_read.min(limits.grace).min(FIRST_REQUEST_AT_SHUTDOWN)) => {}
                }
            }
            conn.as_mut().graceful_shutdown();
        }
    }
    let _ = tokio::time::timeout(limits.grace, conn).await;
}

/// Whether a connection's writes are stuck: since when the socket has refused every byte
/// (the client stopped reading and its window and our send buffer are full).
struct Stall {
    start: std::time::Instant,
    /// Milliseconds after `start` (plus one) when writes began to be refused; 0: not stuck.
    since: std::sync::atomic::AtomicU64,
}

impl Stall {
    fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            since: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A write returned: `Pending` (refused) or progress.
    fn wrote<T>(&self, result: &Poll<std::io::Result<T>>) {
        use std::sync::atomic::Ordering;
        match result {
            Poll::Pending => {
                let _ =
                    self.since
                        .compare_exchange(0, self.now(), Ordering::AcqRel, Ordering::Acquire);
            }
            Poll::Ready(_) => self.since.store(0, Ordering::Release),
        }
    }

    /// Resolves once writes have been refused for `limit` without a break (checked a few
    /// times per `limit`).
    async fn stalled_for(&self, limit: Duration) {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let every = (limit / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            let since = self.since.load(std::sync::atomic::Ordering::Acquire);
            if since != 0 && self.now().saturating_sub(since) >= limit_ms {
                return;
            }
        }
    }
}

/// A connection's socket, telling its [`Stall`] how its writes go.
struct WatchedIo {
    inner: TcpStream,
    stall: Arc<Stall>,
}

impl tokio::io::AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.stall.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.stall.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How many requests a connection has in flight, and a signal when that changes.
#[derive(Default)]
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    /// Requests started on the connection, ever.
    started: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

/// How long a connection that has sent nothing yet is waited for at shutdown.
const FIRST_REQUEST_AT_SHUTDOWN: Duration = Duration::from_secs(1);

impl Activity {
    /// Resolves once a request has started on the connection.
    async fn first_request(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.started.load(Ordering::Acquire) > 0 {
                return;
            }
            changed.await;
        }
    }

    /// Resolves once no request has been in flight for `limit` without a break.
    async fn idle_for(&self, limit: Duration) {
        use std::sync::atomic::Ordering;
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the count is read, so a change in between is not missed.
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                tokio::select! {
                    () = tokio::time::sleep(limit) => return,
                    () = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

/// One request in flight on its connection, until dropped (with its response body).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        activity
            .started
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        activity.changed.notify_waiters();
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client address's share of the connections, released when dropped.
struct ClientSlot {
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(clients: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut map = clients.lock();
        let open = map.entry(ip).or_insert(0);
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(Self {
            clients: clients.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.clients.lock();
        if let Some(open) = map.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A request body that fails with [`BodyTimeout`] once its time is up.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(self.limit).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error` (or one of its sources) is a [`BodyTimeout`].
pub(crate) fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(s) = source {
        if s.is::<BodyTimeout>() {
            return true;
        }
        source = s.source();
    }
    false
}
