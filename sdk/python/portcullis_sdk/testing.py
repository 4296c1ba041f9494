"""Test plugin code natively, without a gateway, and held to what the gateway enforces::

    from portcullis_sdk.testing import TestHost
    host = TestHost(subject="ada", scopes=["words:read"])
    result = host.call_tool(plugin, "count", {"text": "a b"})
    assert result.text == "2 words"

Like the gateway, ``call_tool`` checks the arguments against the tool's inputSchema before the
tool runs (``InvalidArguments``, naming each violation) and a result against its outputSchema
after (``OutputMismatch``: the gateway would refuse that result). Host imports (logs, progress,
notifications, downstream) are answered by the test host: ``host.logs``,
``host.progress_reports``, ``host.notifications``, ``host.requests``, and
``downstream={"notes": stub}`` where ``stub(method, path, headers, body)`` returns a
``Response`` or raises ``DownstreamError`` — or a dict ``{("GET", "/notes"): stub, ...}`` of
stubs by method and path.

``McpTestClient`` speaks MCP to a plugin in-process, as the gateway would serve it
(``tools/list``, ``tools/call``, ``resources/read``, ``prompts/get``,
``completion/complete`` ...), with the gateway's errors and input rounds.
"""

import base64
import json

from . import (Audio, DownstreamError, EmbeddedResource, Image, InvalidArguments, Output,
               ResourceLink, ToolError)
from . import _host
from .validate import problems


class OutputMismatch(AssertionError):
    """A tool's result does not match its outputSchema: the gateway would refuse it."""


class Result:
    """A finished tool call as the client would see it."""

    def __init__(self, content, structured, is_error):
        self.content, self.structured, self.is_error = list(content), structured, is_error

    @property
    def texts(self):
        return [c for c in self.content if isinstance(c, str)]

    @property
    def text(self):
        return "\n".join(self.texts)


class TestHost:
    """A stand-in for the gateway. By default tenant ``test``, issuer
    ``https://issuer.test``, subject ``tester``, no scopes, and a client that can answer every
    kind of input request (``client={"sampling": False}`` takes one away)."""

    __test__ = False  # not a pytest test class

    def __init__(self, tenant="test", issuer="https://issuer.test", subject="tester",
                 scopes=(), config=None, claims=None, downstream=None, client=None):
        self.call = {
            "tenant": tenant,
            "issuer": issuer,
            "subject": subject,
            "client_id": None,
            "scopes": list(scopes),
            "claims": [(k, json.dumps(v)) for k, v in (claims or {}).items()],
            "request_id": "1",
            "config": list((config or {}).items()),
            "client": {"sampling": True, "elicitation": True, "roots": True, **(client or {})},
        }
        self.stubs = dict(downstream or {})
        self.logs = []
        self.progress_reports = []
        self.notifications = []
        self.requests = []
        self.answers = {}
        self.state = None

    # The host imports.
    def log(self, level, logger, message):
        self.logs.append((level, logger, message))

    def progress(self, progress, total, message):
        self.progress_reports.append((progress, total, message))

    def notify_lists_changed(self, kinds):
        self.notifications.append(("lists-changed", sorted(kinds)))

    def notify_resource_updated(self, uri):
        self.notifications.append(("resource-updated", uri))

    def fetch(self, service, method, path, headers, body):
        self.requests.append((service, method, path, headers, body))
        stub = self.stubs.get(service)
        if isinstance(stub, dict):
            route = path.split("?", 1)[0]
            stub = stub.get((method, path)) or stub.get((method, route))
        if stub is None:
            raise DownstreamError("unknown-service",
                                  f"no test stub for `{service}` {method} {path}")
        return stub(method, path, headers, body)

    def answer(self, need, value):
        """The client's answer to an input request (a NeedInput), for the next call."""
        self.answers[need.key] = json.dumps(value)
        self.state = need.state

    def _continuation(self):
        if not self.answers and self.state is None:
            return None
        continuation = {"responses": self.answers, "state": self.state}
        self.answers, self.state = {}, None
        return continuation

    def _run(self, call):
        _host.install(self)
        try:
            return call()
        finally:
            _host.uninstall()

    def call_tool(self, plugin, name, arguments):
        """Call tool ``name``: a Result. ``InvalidArguments`` when the arguments break its
        inputSchema (the gateway's check) or the tool refuses them; ``OutputMismatch`` when the
        result breaks its outputSchema; a ToolError for unknown tools and failures; the
        NeedInput for input requests (answer it and call again)."""
        tool = plugin.tools.get(name)
        if tool is None:
            raise ToolError(f"unknown tool `{name}`")
        wrong = problems(tool.input_schema, arguments)
        if wrong:
            raise InvalidArguments(f"Invalid arguments for tool `{name}`: {'; '.join(wrong)}")
        continuation = self._continuation()
        outcome = self._run(
            lambda: plugin.call_tool(self.call, name, json.dumps(arguments), continuation))
        if outcome[0] == "done":
            result = Result(*outcome[1])
            _check_output(tool, result)
            return result
        if outcome[0] == "input":
            raise outcome[1]
        if outcome[0] == "invalid":
            raise InvalidArguments(outcome[1])
        raise ToolError(outcome[1])

    def read_resource(self, plugin, uri):
        """Read ``uri``: (body, mime_type); a ToolError when nothing serves it or it fails."""
        continuation = self._continuation()
        outcome = self._run(lambda: plugin.read_resource(self.call, uri, continuation))
        if outcome[0] == "done":
            return outcome[1]
        if outcome[0] == "input":
            raise outcome[1]
        raise ToolError(f"unknown resource `{uri}`" if outcome[0] == "not-found" else outcome[1])

    def get_prompt(self, plugin, name, arguments=None):
        """Get prompt ``name``: its messages, a list of (role, str | content)."""
        continuation = self._continuation()
        args = [(k, str(v)) for k, v in (arguments or {}).items()]
        outcome = self._run(lambda: plugin.get_prompt(self.call, name, args, continuation))
        if outcome[0] == "done":
            return outcome[1]
        if outcome[0] == "input":
            raise outcome[1]
        if outcome[0] == "unknown":
            raise ToolError(f"unknown prompt `{name}`")
        if outcome[0] == "invalid":
            raise InvalidArguments(outcome[1])
        raise ToolError(outcome[1])

    def complete(self, plugin, reference, argument, prefix):
        """Completions for ``argument`` of ``("prompt", name)`` or ``("template", uri)``."""
        return self._run(lambda: plugin.complete(self.call, reference, argument, prefix))


def _check_output(tool, result):
    if tool.output_schema is None or result.is_error:
        return
    if result.structured is None:
        raise OutputMismatch(
            f"tool `{tool.name}` declares an outputSchema but returned no structured content")
    wrong = problems(tool.output_schema, result.structured)
    if wrong:
        raise OutputMismatch(
            f"tool `{tool.name}` returned a result that does not match its outputSchema: "
            + "; ".join(wrong))


def content_json(block):
    """One content block as MCP JSON."""
    if isinstance(block, str):
        return {"type": "text", "text": block}
    if isinstance(block, (Image, Audio)):
        kind = "image" if isinstance(block, Image) else "audio"
        return {"type": kind, "data": base64.b64encode(block.data).decode(),
                "mimeType": block.mime_type}
    if isinstance(block, ResourceLink):
        link = {"type": "resource_link", "uri": block.uri, "name": block.name}
        for key, value in (("title", block.title), ("description", block.description),
                           ("mimeType", block.mime_type)):
            if value is not None:
                link[key] = value
        return link
    if isinstance(block, EmbeddedResource):
        return {"type": "resource", "resource": _contents(block.uri, block.mime_type,
                                                          block.text if block.text is not None
                                                          else block.blob)}
    if isinstance(block, Output):
        raise TypeError("an Output cannot be a content block of another")
    return {"type": "text", "text": json.dumps(block)}


def _contents(uri, mime_type, body):
    out = {"uri": uri}
    if mime_type is not None:
        out["mimeType"] = mime_type
    if isinstance(body, (bytes, bytearray)):
        out["blob"] = base64.b64encode(bytes(body)).decode()
    else:
        out["text"] = body
    return out


class McpTestClient:
    """MCP spoken to a plugin in-process, as the gateway serves it: ``request(method,
    params)`` returns the JSON-RPC answer, ``{"result": ...}`` or ``{"error": {"code",
    "message"}}``. A call that needs input answers the 2026-07-28 way (``inputRequests``
    and ``requestState``); send ``inputResponses`` and the ``requestState`` back to go on."""

    __test__ = False

    def __init__(self, plugin, host=None):
        self.plugin, self.host = plugin, host or TestHost()

    def request(self, method, params=None):
        params = dict(params or {})
        handler = {
            "initialize": self._initialize,
            "ping": lambda p: {},
            "tools/list": self._tools,
            "tools/call": self._call,
            "resources/list": self._resources,
            "resources/templates/list": self._templates,
            "resources/read": self._read,
            "prompts/list": self._prompts,
            "prompts/get": self._get_prompt,
            "completion/complete": self._complete,
        }.get(method)
        if handler is None:
            return _error(-32601, f"method not found: {method}")
        try:
            return {"result": handler(params)}
        except _Refused as e:
            return _error(e.code, e.message)

    def _initialize(self, params):
        capabilities = {"tools": {"listChanged": True}}
        if self.plugin.resources or self.plugin.templates:
            capabilities["resources"] = {"listChanged": True, "subscribe": True}
        if self.plugin.prompts:
            capabilities["prompts"] = {"listChanged": True}
        if any(p["complete"] for p in self.plugin.prompts.values()) or any(
                t["complete"] for t in self.plugin.templates):
            capabilities["completions"] = {}
        return {"protocolVersion": params.get("protocolVersion", "2026-07-28"),
                "capabilities": capabilities,
                "serverInfo": {"name": "portcullis-test", "version": "0"}}

    def _tools(self, params):
        tools = []
        for t in self.plugin.tools.values():
            tool = {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
            if t.title is not None:
                tool["title"] = t.title
            if t.output_schema is not None:
                tool["outputSchema"] = t.output_schema
            if t.annotations:
                tool["annotations"] = {_camel(k): v for k, v in t.annotations.items()}
            meta = {}
            if t.scopes:
                meta["dev.portcullis/requiredScopes"] = t.scopes
            if t.task is not None:
                meta["io.modelcontextprotocol/tasks"] = {"taskSupport": t.task[0]}
            if meta:
                tool["_meta"] = meta
            tools.append(tool)
        return {"tools": tools}

    def _with_inputs(self, params):
        for key, value in (params.get("inputResponses") or {}).items():
            self.host.answers[key] = json.dumps(value)
        if "requestState" in params:
            self.host.state = _unwrap_state(params["requestState"])

    def _call(self, params):
        from . import NeedInput
        name, arguments = params.get("name"), params.get("arguments") or {}
        if name not in self.plugin.tools:
            raise _Refused(-32602, f"unknown tool: {name}")
        self._with_inputs(params)
        try:
            result = self.host.call_tool(self.plugin, name, arguments)
        except NeedInput as need:
            return _input_round(need)
        except OutputMismatch as e:
            return _is_error(f"{e} (the gateway refuses such a result)")
        except ToolError as e:
            return _is_error(str(e))
        out = {"content": [content_json(c) for c in result.content], "isError": result.is_error}
        if result.structured is not None:
            out["structuredContent"] = result.structured
        return out

    def _resources(self, params):
        return {"resources": [_strip({"uri": r["uri"], "name": r["name"], "title": r["title"],
                                      "description": r["description"],
                                      "mimeType": r["mime_type"]})
                              for r in self.plugin.resources.values()]}

    def _templates(self, params):
        return {"resourceTemplates": [_strip({"uriTemplate": t["uri_template"],
                                              "name": t["name"], "title": t["title"],
                                              "description": t["description"],
                                              "mimeType": t["mime_type"]})
                                      for t in self.plugin.templates]}

    def _read(self, params):
        from . import NeedInput
        uri = params.get("uri", "")
        self._with_inputs(params)
        continuation = self.host._continuation()
        try:
            outcome = self.host._run(
                lambda: self.plugin.read_resource(self.host.call, uri, continuation))
        except NeedInput as need:
            return _input_round(need)
        if outcome[0] == "not-found":
            raise _Refused(-32002, f"resource not found: {uri}")
        if outcome[0] == "input":
            return _input_round(outcome[1])
        if outcome[0] == "failed":
            raise _Refused(-32603, outcome[1])
        body, mime = outcome[1]
        return {"contents": [_contents(uri, mime, body)]}

    def _prompts(self, params):
        return {"prompts": [_strip({
            "name": p["name"], "title": p["title"], "description": p["description"],
            "arguments": [_strip({"name": a, "description": d, "required": r})
                          for a, r, d in p["arguments"]]})
            for p in self.plugin.prompts.values()]}

    def _get_prompt(self, params):
        from . import NeedInput
        name = params.get("name")
        if name not in self.plugin.prompts:
            raise _Refused(-32602, f"unknown prompt: {name}")
        self._with_inputs(params)
        try:
            messages = self.host.get_prompt(self.plugin, name, params.get("arguments") or {})
        except NeedInput as need:
            return _input_round(need)
        except InvalidArguments as e:
            raise _Refused(-32602, str(e)) from None
        except ToolError as e:
            raise _Refused(-32603, str(e)) from None
        return {"messages": [{"role": r, "content": content_json(c)} for r, c in messages]}

    def _complete(self, params):
        ref, argument = params.get("ref") or {}, params.get("argument") or {}
        reference = (("prompt", ref.get("name")) if ref.get("type") == "ref/prompt"
                     else ("template", ref.get("uri")))
        values = self.host.complete(self.plugin, reference, argument.get("name"),
                                    argument.get("value", ""))
        return {"completion": {"values": values, "hasMore": False}}


class _Refused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def _error(code, message):
    return {"error": {"code": code, "message": message}}


def _is_error(text):
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _strip(d):
    return {k: v for k, v in d.items() if v is not None}


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _input_round(need):
    if need.kind == "elicit":
        message, schema = need.payload
        request = {"method": "elicitation/create",
                   "params": {"message": message, "requestedSchema": json.loads(schema)}}
    elif need.kind == "roots":
        request = {"method": "roots/list", "params": {}}
    else:
        request = {"method": "sampling/createMessage", "params": json.loads(need.payload)}
    return {"inputRequests": {need.key: request},
            "requestState": json.dumps({"state": need.state})}


def _unwrap_state(text):
    try:
        return json.loads(text).get("state")
    except (TypeError, ValueError, AttributeError):
        return None
