"""The official Python SDK (PyPI mcp 2.3.0) on 2026-07-28 calling a tool whose service needs the
user's consent: the gateway answers with an input round asking a URL elicitation; the SDK
hands it to the elicitation callback, where the "user" completes the consent (running
tests/js/consent-follow.mjs on the URL, as a browser would), and the SDK retries the call on
its own. Prints a JSON transcript: the elicitations seen, the consent page's answer, the
result's text.

usage: python consent_client.py <mcp url> <bearer token> <node>
"""

import asyncio
import json
import os
import subprocess
import sys

import httpx2 as httpx
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

MCP_URL, TOKEN, NODE = sys.argv[1], sys.argv[2], sys.argv[3]
HERE = os.path.dirname(os.path.abspath(__file__))
transcript: dict = {"elicitations": [], "consents": []}


async def on_elicit(context, params):
    transcript["elicitations"].append({"mode": params.mode, "url": getattr(params, "url", None)})
    if params.mode != "url":
        return types.ElicitResult(action="decline")
    done = subprocess.run(
        [NODE, os.path.join(HERE, "..", "js", "consent-follow.mjs"), params.url],
        capture_output=True, text=True, check=True, timeout=120,
    )
    transcript["consents"].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return types.ElicitResult(action="accept")


async def main() -> None:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    async with Client(streamable_http_client(MCP_URL, http_client=http), elicitation_callback=on_elicit) as client:
        transcript["protocol"] = str(client.protocol_version)
        result = await client.call_tool("probe.fetch", {"service": "github", "path": "/echo"})
        transcript["text"] = "".join(c.text for c in result.content if c.type == "text")
        transcript["is_error"] = bool(result.is_error)
    print(json.dumps(transcript))


asyncio.run(main())
