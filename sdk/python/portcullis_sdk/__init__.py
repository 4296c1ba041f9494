"""Write Portcullis gateway plugins in Python.

A tool is a function whose type hints are its schema::

    from portcullis_sdk import Plugin, Context

    plugin = Plugin()

    @plugin.tool(scopes=["words:read"], read_only=True)
    def count(ctx: Context, text: str) -> str:
        "Count the words in a text."
        return f"{len(text.split())} words"

    Tools, Resources, Prompts, Completion = plugin.exports()

Build with ``python -m portcullis_sdk build app.py -o plugin.wasm`` (componentize-py, world
``full-plugin`` of the vendored WIT); test natively with ``portcullis_sdk.testing.TestHost``.
Each call runs in a fresh instance: keep no state between calls.
"""

import dataclasses
import json
import re
import urllib.parse

from . import schema as _schema
from . import _host

__all__ = [
    "Plugin",
    "Context",
    "ToolError",
    "InvalidArguments",
    "NeedInput",
    "Output",
    "DownstreamError",
    "Response",
    "fetch",
    "log",
]


class ToolError(Exception):
    """A failure the model sees (an ``isError`` result with this message)."""


class InvalidArguments(ToolError):
    """The arguments are unusable; the model sees why and can correct them."""


class NeedInput(Exception):
    """The call needs an answer from the client first; raised by ``Context.elicit`` and the
    like. Let it propagate: the gateway asks, then calls again with the answer."""

    def __init__(self, key, kind, payload, state):
        super().__init__(f"needs input `{key}`")
        self.key, self.kind, self.payload, self.state = key, kind, payload, state


class DownstreamError(Exception):
    """A downstream request got no answer: ``kind`` is one of unknown-service, not-granted,
    credential, blocked, timeout, too-large, transport."""

    def __init__(self, kind, message=""):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind, self.message = kind, message


class Output:
    """A result with several content blocks, structured content, or ``is_error``."""

    def __init__(self, text=None, structured=None, is_error=False):
        self.texts = [] if text is None else [text]
        self.structured = structured
        self.is_error = is_error

    @classmethod
    def error(cls, text):
        return cls(text, is_error=True)


class Response:
    """A downstream answer."""

    def __init__(self, status, body=b"", headers=None):
        self.status, self.headers = status, list(headers or [])
        self.body = body.encode() if isinstance(body, str) else bytes(body)

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def ok(self):
        """This response if it is 2xx, else a ToolError naming the status and the body."""
        if 200 <= self.status < 300:
            return self
        raise ToolError(f"the service answered HTTP {self.status}: {self.text()[:300]}")


def fetch(service, path, method="GET", headers=(), body=None, json_body=None):
    """HTTP to the downstream service the operator granted (the gateway adds the
    credential; this plugin never sees it)."""
    headers = list(headers)
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers.append(("content-type", "application/json"))
    elif isinstance(body, str):
        body = body.encode()
    return _host.host().fetch(service, method, path, headers, body)


def log(message, level="info", logger=None):
    """Log to the client (if it asked for this level) and the gateway. Never log secrets."""
    _host.host().log(level, logger, message)


class Context:
    """Who is calling: tenant, issuer, subject, scopes, claims, the operator's configuration.
    Never a token."""

    def __init__(self, call, continuation=None):
        self._call = call
        self._continuation = continuation or {"responses": {}, "state": None}
        self._keep = None

    tenant = property(lambda self: self._call["tenant"])
    issuer = property(lambda self: self._call.get("issuer"))
    subject = property(lambda self: self._call.get("subject"))
    client_id = property(lambda self: self._call.get("client_id"))
    scopes = property(lambda self: list(self._call.get("scopes", [])))
    request_id = property(lambda self: self._call.get("request_id", ""))

    def has_scope(self, scope):
        return scope in self._call.get("scopes", [])

    def claim(self, name):
        value = dict(self._call.get("claims", [])).get(name)
        return None if value is None else json.loads(value)

    def config(self, key, default=None):
        return dict(self._call.get("config", [])).get(key, default)

    def progress(self, progress, total=None, message=None):
        _host.host().progress(progress, total, message)

    @property
    def state(self):
        """Your state from the previous input round (verified by the gateway)."""
        return self._continuation.get("state")

    def keep_state(self, state):
        """State to get back with the client's answers."""
        self._keep = state

    def answer(self, key):
        text = self._continuation["responses"].get(key)
        return None if text is None else json.loads(text)

    def elicit(self, key, message, fields):
        """Ask the user to fill in a form: ``fields`` maps names to types (str, int, float,
        bool, Literal). Returns the answers (a dict) or None if declined; the first time it
        raises NeedInput, which you let propagate."""
        answer = self.answer(key)
        if answer is None:
            requested = {
                "type": "object",
                "properties": {n: _schema.schema_of(t, f"elicit({n})") for n, t in fields.items()},
                "required": list(fields),
            }
            raise NeedInput(key, "elicit", (message, json.dumps(requested)), self._keep)
        return answer.get("content") if answer.get("action") == "accept" else None

    def sample(self, key, params):
        """Ask the client's model (``sampling/createMessage`` params); returns its result."""
        answer = self.answer(key)
        if answer is None:
            raise NeedInput(key, "sample", json.dumps(params), self._keep)
        return answer


@dataclasses.dataclass
class _Tool:
    name: str
    function: object
    title: str
    description: str
    scopes: list
    annotations: dict
    input_schema: dict
    output_schema: dict


class Plugin:
    """What a plugin offers. Decorate functions with ``tool``, ``resource`` and ``prompt``,
    then export: ``Tools, Resources, Prompts, Completion = plugin.exports()``."""

    def __init__(self):
        self.tools = {}
        self.resources = {}
        self.templates = []
        self.prompts = {}

    def tool(self, name=None, title=None, scopes=(), read_only=None, destructive=None,
             idempotent=None, open_world=None):
        """Register ``function(ctx, **arguments)`` as a tool; its docstring is the
        description, its type hints the schemas (a TypedDict or dataclass return value is
        structured output with an outputSchema)."""

        def register(function):
            tool_name = name or function.__name__
            hints = {
                "read_only_hint": read_only,
                "destructive_hint": destructive,
                "idempotent_hint": idempotent,
                "open_world_hint": open_world,
            }
            self.tools[tool_name] = _Tool(
                name=tool_name,
                function=function,
                title=title,
                description=(function.__doc__ or "").strip(),
                scopes=list(scopes),
                annotations={k: v for k, v in hints.items() if v is not None},
                input_schema=_schema.parameters_schema(function),
                output_schema=_schema.output_schema(function),
            )
            return function

        return register

    def resource(self, uri, name=None, mime_type=None, scopes=()):
        """Register ``function(ctx) -> str | bytes`` as the resource at ``uri``."""

        def register(function):
            self.resources[uri] = {
                "uri": uri,
                "name": name or function.__name__,
                "description": (function.__doc__ or "").strip() or None,
                "mime_type": mime_type,
                "scopes": list(scopes),
                "function": function,
            }
            return function

        return register

    def resource_template(self, uri_template, name=None, mime_type=None, scopes=(), complete=None):
        """Register ``function(ctx, **variables) -> str | bytes`` for the URIs matching
        ``uri_template`` (RFC 6570 level 1, e.g. ``notes://{id}``); ``complete`` maps a
        variable to ``completer(ctx, prefix) -> list[str]``."""

        def register(function):
            self.templates.append({
                "uri_template": uri_template,
                "name": name or function.__name__,
                "description": (function.__doc__ or "").strip() or None,
                "mime_type": mime_type,
                "scopes": list(scopes),
                "complete": dict(complete or {}),
                "function": function,
            })
            return function

        return register

    def prompt(self, name=None, scopes=(), complete=None):
        """Register ``function(ctx, **string_arguments) -> str | list[(role, text)]``;
        ``complete`` maps an argument to ``completer(ctx, prefix) -> list[str]``."""

        def register(function):
            parameters = _schema.parameters_schema(function)
            self.prompts[name or function.__name__] = {
                "name": name or function.__name__,
                "description": (function.__doc__ or "").strip(),
                "arguments": [
                    (arg, arg in parameters["required"]) for arg in parameters["properties"]
                ],
                "scopes": list(scopes),
                "complete": dict(complete or {}),
                "function": function,
            }
            return function

        return register

    # The calls, in plain Python values (the component boundary converts them).

    def call_tool(self, call, name, arguments, continuation=None):
        """Run tool ``name``: ("done", result) | ("input", NeedInput) | ("unknown",) |
        ("invalid", message) | ("failed", message)."""
        tool = self.tools.get(name)
        if tool is None:
            return ("unknown",)
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
            if not isinstance(args, dict):
                return ("invalid", "the arguments must be a JSON object")
            result = tool.function(Context(call, continuation), **args)
        except NeedInput as need:
            return ("input", need)
        except InvalidArguments as e:
            return ("invalid", str(e))
        except TypeError as e:
            # A missing or unexpected argument (the gateway checks the schema first).
            return ("invalid", str(e))
        except ToolError as e:
            return ("failed", str(e))
        except DownstreamError as e:
            return ("failed", str(e))
        return ("done", _result(result, tool.output_schema is not None))

    def read_resource(self, call, uri, continuation=None):
        resource, variables = self.resources.get(uri), {}
        if resource is None:
            for template in self.templates:
                variables = match_template(template["uri_template"], uri)
                if variables is not None:
                    resource = template
                    break
        if resource is None:
            return ("not-found",)
        try:
            body = resource["function"](Context(call, continuation), **variables)
        except NeedInput as need:
            return ("input", need)
        except (ToolError, DownstreamError) as e:
            return ("failed", str(e))
        return ("done", (body, resource["mime_type"]))

    def get_prompt(self, call, name, arguments, continuation=None):
        prompt = self.prompts.get(name)
        if prompt is None:
            return ("unknown",)
        try:
            messages = prompt["function"](Context(call, continuation), **dict(arguments))
        except NeedInput as need:
            return ("input", need)
        except (InvalidArguments, TypeError) as e:
            return ("invalid", str(e))
        except (ToolError, DownstreamError) as e:
            return ("failed", str(e))
        if isinstance(messages, str):
            messages = [("user", messages)]
        return ("done", messages)

    def complete(self, call, reference, argument, prefix):
        """Completions for ``argument`` of a prompt (``("prompt", name)``) or a resource
        template (``("template", uri_template)``): at most 100 values."""
        kind, target = reference
        if kind == "prompt":
            item = self.prompts.get(target)
        else:
            item = next((t for t in self.templates if t["uri_template"] == target), None)
        completer = (item or {}).get("complete", {}).get(argument)
        if completer is None:
            return []
        return [str(v) for v in completer(Context(call), prefix)][:100]

    def exports(self):
        """The classes componentize-py looks for in the app module (outside a component,
        e.g. in native tests, four Nones)."""
        try:
            from ._component import exports
        except ImportError:
            return (None, None, None, None)
        return exports(self)


def match_template(template, uri):
    """The variables of ``uri`` under a level-1 URI template (``notes://{id}``), or None."""
    names = []

    def part(piece):
        if piece.startswith("{") and piece.endswith("}"):
            names.append(piece[1:-1])
            return "([^/]+)"
        return re.escape(piece)

    pattern = "".join(part(p) for p in re.split(r"(\{[^}]+\})", template) if p)
    m = re.fullmatch(pattern, uri)
    if m is None:
        return None
    return {n: urllib.parse.unquote(v) for n, v in zip(names, m.groups())}


def _result(value, structured):
    """A tool's return value as (texts, structured, is_error)."""
    if isinstance(value, Output):
        return (value.texts, value.structured, value.is_error)
    if isinstance(value, str):
        return ([value], None, False)
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    text = json.dumps(value)
    return ([text], value if structured or isinstance(value, dict) else None, False)
