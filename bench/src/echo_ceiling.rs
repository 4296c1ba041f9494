//! The benchmark's ceiling: a bare hyper HTTP/1.1 server that answers the load generator's
//! requests with the bytes an MCP echo server would — no MCP library, no auth, no sandbox, no
//! session table — so every other system can be reported as a fraction of what this core
//! and this loopback can do at all.
//!
//! It parses each body (a server has to, to answer with the request's id and text) and
//! answers: `initialize` with a fixed result and an `Mcp-Session-Id`, notifications with 202,
//! `tools/call` with the echoed text as `application/json`. Nothing else is served.
//!
//! `echo-ceiling <port>` serves `http://127.0.0.1:<port>/mcp` until killed, on one thread.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

async fn answer(req: hyper::Request<Incoming>) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let reply = |status: u16, body: Bytes| {
        let mut resp = hyper::Response::new(Full::new(body));
        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        resp
    };
    let Ok(body) = req.into_body().collect().await else {
        return Ok(reply(400, Bytes::new()));
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return Ok(reply(400, Bytes::new()));
    };
    let id = &message["id"];
    let body = match message["method"].as_str() {
        Some("initialize") => json!({"jsonrpc": "2.0", "id": id, "result": {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "echo-ceiling", "version": "1"}}}),
        Some("tools/call") => json!({"jsonrpc": "2.0", "id": id, "result": {
            "resultType": "complete",
            "content": [{"type": "text", "text": message["params"]["arguments"]["text"]}]}}),
        Some(_) if id.is_null() => return Ok(reply(202, Bytes::new())),
        _ => return Ok(reply(404, Bytes::new())),
    };
    let mut resp = reply(200, Bytes::from(body.to_string()));
    if message["method"] == "initialize" {
        resp.headers_mut().insert(
            "mcp-session-id",
            hyper::header::HeaderValue::from_static("ceiling"),
        );
    }
    Ok(resp)
}

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: echo-ceiling <port>"))?
        .parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            loop {
                let (tcp, _) = listener.accept().await?;
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service_fn(answer))
                        .await;
                });
            }
        })
}
