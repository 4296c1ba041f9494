"""The official Python SDK (PyPI mcp 2.3.0) running one whole 2025 session through a load balancer.

initialize (mode="legacy": the session handshake), list, calls that log and report progress, a
tool that asks for input (elicitation answered here), more calls, then the session ends. Prints a
JSON transcript for the Rust test, which checks in the balancer's log where the requests landed.

usage: python cluster_session_client.py <mcp url> <extra calls>
"""

import asyncio
import json
import sys

from mcp import Client, types

MCP_URL = sys.argv[1]
EXTRA = int(sys.argv[2]) if len(sys.argv) > 2 else 6
transcript: dict = {"logs": [], "progress": [], "elicitations": []}


async def on_log(params: types.LoggingMessageNotificationParams) -> None:
    transcript["logs"].append(params.data)


async def on_elicit(context, params):
    transcript["elicitations"].append(params.message)
    return types.ElicitResult(action="accept", content={"username": "ada", "email": "ada@example.com"})


async def on_progress(progress: float, total: float | None, message: str | None) -> None:
    transcript["progress"].append(progress)


def text(result) -> str:
    return "".join(c.text for c in result.content)


async def main() -> None:
    async with Client(MCP_URL, mode="legacy", logging_callback=on_log, elicitation_callback=on_elicit) as client:
        transcript["protocol"] = str(client.protocol_version)
        transcript["tools"] = len((await client.list_tools()).tools)
        transcript["simple"] = text(await client.call_tool("test_simple_text", {}))
        transcript["logged"] = text(await client.call_tool("test_tool_with_logging", {}))
        transcript["progressed"] = text(
            await client.call_tool("test_tool_with_progress", {}, progress_callback=on_progress)
        )
        transcript["elicited"] = text(await client.call_tool("test_elicitation", {"message": "Who are you?"}))
        calls = 0
        for _ in range(EXTRA):
            if text(await client.call_tool("test_simple_text", {})):
                calls += 1
        transcript["extra_calls"] = calls
    print(json.dumps(transcript))


asyncio.run(main())
