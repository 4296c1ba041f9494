"""The official Python SDK (PyPI mcp 2.3.0) through the complete MCP OAuth flow against Portcullis.

401 -> protected resource metadata -> AS metadata -> DCR -> authorize (PKCE, headless) -> token
-> tools/list -> tools/call; then a tool needing more scope -> 403 -> re-authorization -> success.
Prints a JSON transcript for the Rust test.

usage: python oauth_client.py <mcp url>
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2 as httpx
from mcp import Client
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

MCP_URL = sys.argv[1]
REDIRECT = "http://127.0.0.1:33419/callback"
transcript = {"authorizations": 0, "statuses": []}


class Memory(TokenStorage):
    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        transcript["scopes_granted"] = tokens.scope

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info
        transcript["registered_client_id"] = client_info.client_id


pending: dict[str, AuthorizationCodeResult] = {}
browser = httpx.AsyncClient(follow_redirects=False)


async def redirect_handler(url: str) -> None:
    """Play the user's browser: follow the AS's redirects (with cookies) to our redirect URI."""
    transcript["authorizations"] += 1
    transcript["authorize_params"] = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    for _ in range(20):
        resp = await browser.get(url)
        location = resp.headers.get("location")
        if not location:
            raise RuntimeError(f"authorization stopped at {url}: HTTP {resp.status_code}")
        url = urljoin(url, location)
        if url.startswith(REDIRECT):
            q = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
            if "error" in q:
                raise RuntimeError(f"authorization failed: {q}")
            pending["result"] = AuthorizationCodeResult(code=q["code"], state=q.get("state"), iss=q.get("iss"))
            transcript["iss"] = q.get("iss")
            return
    raise RuntimeError("too many redirects")


async def callback_handler() -> AuthorizationCodeResult:
    return pending.pop("result")


async def log_response(response: httpx.Response) -> None:
    if response.request.url.path.endswith("/mcp"):
        transcript["statuses"].append(response.status_code)
        if response.status_code in (401, 403):
            transcript.setdefault("challenges", []).append(response.headers.get("www-authenticate"))


async def main() -> None:
    auth = OAuthClientProvider(
        server_url=MCP_URL,
        client_metadata=OAuthClientMetadata(
            client_name="portcullis-e2e-python",
            redirect_uris=[REDIRECT],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=Memory(),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    http = httpx.AsyncClient(auth=auth, event_hooks={"response": [log_response]}, timeout=30)
    async with Client(streamable_http_client(MCP_URL, http_client=http)) as client:
        transcript["protocol_version"] = str(client.protocol_version)
        transcript["tools"] = [t.name for t in (await client.list_tools()).tools]
        greet = await client.call_tool("hello.greet", {"name": "Python"})
        transcript["greet"] = greet.content[0].text
        who = await client.call_tool("hello.whoami", {})
        transcript["whoami"] = who.structured_content
        transcript["whoami_is_error"] = bool(who.is_error)
    print(json.dumps(transcript))


asyncio.run(main())
