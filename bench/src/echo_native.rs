//! The benchmark's baseline: a native rmcp 3.9 MCP server with one `echo` tool, no
//! authentication and no sandbox, on the same transport configuration as the gateway (both
//! eras on one endpoint: 2025 sessions and stateless 2026-07-28 requests).
//!
//! `echo-native <port>` serves `http://127.0.0.1:<port>/mcp` until killed. The thread count
//! comes from `BENCH_WORKER_THREADS` (default 1: the benchmark gives every server one core).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

#[derive(Clone)]
struct Echo {
    info: Arc<ServerConfig>,
    tools: Arc<ListToolsResult>,
}

fn model<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid MCP value")
}

impl Echo {
    fn new() -> Self {
        let info = ServerConfig::new(model(json!({"tools": {}})))
            .with_server_info(model(json!({"name": "echo-native", "version": "1"})));
        let tools = model(json!({"resultType": "complete", "tools": [{
            "name": "echo",
            "description": "Echo the text back.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        }]}));
        Self {
            info: Arc::new(info),
            tools: Arc::new(tools),
        }
    }
}

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        self.info.as_ref().clone()
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&[
            ProtocolVersion::V_2026_07_28,
            ProtocolVersion::V_2025_11_25,
            ProtocolVersion::V_2025_06_18,
            ProtocolVersion::V_2025_03_26,
        ])
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(self.tools.as_ref().clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name != "echo" {
            return Err(ErrorData::invalid_params("Unknown tool", None));
        }
        let text = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("text"))
            .and_then(Value::as_str)
            .ok_or_else(|| ErrorData::invalid_params("`text` is required", None))?;
        Ok(CallToolResponse::Complete(model(json!({
            "resultType": "complete",
            "content": [{"type": "text", "text": text}],
        }))))
    }
}

fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: echo-native <port>"))?
        .parse()?;
    let threads = std::env::var("BENCH_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(async move {
            let config = StreamableHttpServerConfig::default()
                .with_legacy_session_mode(true)
                .with_sse_keep_alive(Some(Duration::from_secs(15)));
            let echo = Echo::new();
            let service = StreamableHttpService::new(
                move || Ok(echo.clone()),
                Arc::new(LocalSessionManager::default()),
                config,
            );
            let app = axum::Router::new().route_service("/mcp", service);
            use axum::serve::ListenerExt as _;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await?
                .tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
            axum::serve(listener, app).await?;
            Ok(())
        })
}
