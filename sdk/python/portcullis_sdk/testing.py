"""Test plugin code natively, without a gateway::

    from portcullis_sdk.testing import TestHost
    host = TestHost(subject="ada", scopes=["words:read"])
    result = host.call_tool(plugin, "count", {"text": "a b"})
    assert result.text == "2 words"

Host imports (logs, progress, downstream) are answered by the test host: ``host.logs``,
``host.requests``, and ``downstream={"notes": stub}`` where ``stub(method, path, headers,
body)`` returns a ``Response`` or raises ``DownstreamError``.
"""

import json

from . import DownstreamError, ToolError
from . import _host


class Result:
    """A finished tool call as the client would see it."""

    def __init__(self, texts, structured, is_error):
        self.texts, self.structured, self.is_error = texts, structured, is_error

    @property
    def text(self):
        return "\n".join(self.texts)


class TestHost:
    """A stand-in for the gateway."""

    __test__ = False  # not a pytest test class

    def __init__(self, tenant="test", issuer="https://issuer.test", subject="tester",
                 scopes=(), config=None, claims=None, downstream=None):
        self.call = {
            "tenant": tenant,
            "issuer": issuer,
            "subject": subject,
            "client_id": None,
            "scopes": list(scopes),
            "claims": [(k, json.dumps(v)) for k, v in (claims or {}).items()],
            "request_id": "1",
            "config": list((config or {}).items()),
        }
        self.stubs = dict(downstream or {})
        self.logs = []
        self.progress_reports = []
        self.requests = []
        self.answers = {}
        self.state = None

    # The host imports.
    def log(self, level, logger, message):
        self.logs.append((level, logger, message))

    def progress(self, progress, total, message):
        self.progress_reports.append((progress, total, message))

    def fetch(self, service, method, path, headers, body):
        self.requests.append((service, method, path, headers, body))
        stub = self.stubs.get(service)
        if stub is None:
            raise DownstreamError("unknown-service", f"no test stub for service `{service}`")
        return stub(method, path, headers, body)

    def answer(self, need, value):
        """The client's answer to an input request (a NeedInput), for the next call."""
        self.answers[need.key] = json.dumps(value)
        self.state = need.state

    def call_tool(self, plugin, name, arguments):
        """Call tool ``name``: a Result; a ToolError for invalid arguments or failures; the
        NeedInput for input requests (answer it and call again)."""
        continuation = None
        if self.answers or self.state is not None:
            continuation = {"responses": self.answers, "state": self.state}
            self.answers, self.state = {}, None
        _host.install(self)
        try:
            outcome = plugin.call_tool(self.call, name, json.dumps(arguments), continuation)
        finally:
            _host.uninstall()
        if outcome[0] == "done":
            return Result(*outcome[1])
        if outcome[0] == "input":
            raise outcome[1]
        if outcome[0] == "unknown":
            raise ToolError(f"unknown tool `{name}`")
        raise ToolError(outcome[1])

    def read_resource(self, plugin, uri):
        """Read ``uri``: (body, mime_type); a ToolError when nothing serves it or it fails."""
        _host.install(self)
        try:
            outcome = plugin.read_resource(self.call, uri)
        finally:
            _host.uninstall()
        if outcome[0] == "done":
            return outcome[1]
        if outcome[0] == "input":
            raise outcome[1]
        raise ToolError(f"unknown resource `{uri}`" if outcome[0] == "not-found" else outcome[1])
