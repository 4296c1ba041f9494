"""The Python SDK's MCP server (mcp 2.x MCPServer) with the benchmark's `echo` tool.

    python bench_echo_server.py stateless|session <port>

stateless: stateless_http with JSON answers; session: the default stateful mode. Served by
uvicorn with one worker, access log off (cargo xtask bench).
"""

import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

mode, port = sys.argv[1], int(sys.argv[2])
server = MCPServer("echo-python")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return text


stateless = mode == "stateless"
app = server.streamable_http_app(json_response=True, stateless_http=stateless)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
