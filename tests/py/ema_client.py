"""Enterprise-Managed Authorization with the official Python SDK (PyPI mcp 2.3.0): its
`IdentityAssertionOAuthProvider` trades an identity assertion (ID-JAG) from an enterprise IdP
for an access token at the MCP server's authorization server (the RFC 7523 jwt-bearer grant),
then calls tools with it.

The IdP is played here: the assertion is signed with a test IdP's key (PyJWT). `mode` makes it
what the test needs: `good`, or one way it must be refused — `forged` (signed by another key),
`expired`, `wrong-audience` (for another authorization server), `untrusted-idp` (an issuer the
AS does not trust), `other-client` (issued to another client).

usage: python ema_client.py <mcp url> <AS issuer> <client id> <client secret> <IdP key (PEM)>
                            <IdP issuer> <IdP key id> <mode> [<forging key (PEM)>]
Prints a JSON transcript: whether it got through, the tool results or the error.
"""

import asyncio
import json
import sys
import time
import uuid

import httpx2 as httpx
import jwt
from mcp import Client
from mcp.client.auth import TokenStorage
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from mcp.client.streamable_http import streamable_http_client

MCP_URL, AS_ISSUER, CLIENT_ID, CLIENT_SECRET, IDP_KEY, IDP_ISSUER, KID, MODE = sys.argv[1:9]
FORGING_KEY = sys.argv[9] if len(sys.argv) > 9 else None
transcript = {"mode": MODE, "assertions": []}


class Memory(TokenStorage):
    tokens = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens
        transcript["token_scope"] = tokens.scope

    async def get_client_info(self):
        return None

    async def set_client_info(self, client_info):
        pass


async def id_jag(audience: str, resource: str) -> str:
    """The enterprise IdP's identity assertion for alice, to `audience` for `resource`."""
    now = int(time.time())
    claims = {
        "iss": IDP_ISSUER, "sub": "alice@corp.example", "aud": audience, "client_id": CLIENT_ID,
        "resource": resource, "scope": "mcp:tools offline_access", "jti": str(uuid.uuid4()),
        "iat": now, "exp": now + 300,
    }
    key_file = IDP_KEY
    if MODE == "forged":
        key_file = FORGING_KEY
    elif MODE == "expired":
        claims["iat"], claims["exp"] = now - 900, now - 600
    elif MODE == "wrong-audience":
        claims["aud"] = "https://another-as.example"
    elif MODE == "untrusted-idp":
        claims["iss"] = "https://idp.elsewhere.example"
    elif MODE == "other-client":
        claims["client_id"] = "someone-else"
    with open(key_file) as f:
        key = f.read()
    assertion = jwt.encode(claims, key, algorithm="RS256", headers={"typ": "oauth-id-jag+jwt", "kid": KID})
    # Its signature, so the test can look for it where it must never be (the gateway's log).
    transcript["assertions"].append({"aud": audience, "resource": resource,
                                     "signature": assertion.split(".")[2]})
    return assertion


async def main() -> None:
    auth = IdentityAssertionOAuthProvider(
        server_url=MCP_URL, storage=Memory(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        issuer=AS_ISSUER, assertion_provider=id_jag, scope="mcp:tools",
    )
    http = httpx.AsyncClient(auth=auth, timeout=30)
    try:
        async with Client(streamable_http_client(MCP_URL, http_client=http)) as client:
            who = await client.call_tool("hello.whoami", {})
            transcript["ok"] = True
            transcript["whoami"] = who.structured_content
    except BaseException as e:  # the SDK raises the AS's refusal (in an exception group)
        transcript["ok"] = False
        transcript["error"] = repr(e)
        for inner in getattr(e, "exceptions", []):
            transcript["error"] += " | " + repr(inner)
    print(json.dumps(transcript))


asyncio.run(main())
