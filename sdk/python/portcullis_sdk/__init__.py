"""Write Portcullis gateway plugins in Python.

A tool is a function whose type hints are its schema::

    from portcullis_sdk import Plugin, Context

    plugin = Plugin()

    @plugin.tool(scopes=["words:read"], read_only=True)
    def count(ctx: Context, text: str) -> str:
        "Count the words in a text."
        return f"{len(text.split())} words"

    Tools, Resources, Prompts, Completion, Tasks, Approvals = plugin.exports()

Build with ``python -m portcullis_sdk build app.py -o plugin.wasm`` (componentize-py, world
``any-plugin`` of the vendored WIT); test natively with ``portcullis_sdk.testing.TestHost``.
Each call runs in a fresh instance: keep no state between calls.
"""

import dataclasses
import inspect
import json
import re
import sys
import traceback
import urllib.parse

from . import schema as _schema
from . import _host
from .schema import Field

__all__ = [
    "Approval",
    "Plugin",
    "Context",
    "Field",
    "ToolError",
    "InvalidArguments",
    "NotFound",
    "NeedInput",
    "Output",
    "Image",
    "Audio",
    "ResourceLink",
    "EmbeddedResource",
    "DownstreamError",
    "Response",
    "fetch",
    "log",
    "notify_lists_changed",
    "notify_resource_updated",
]


class ToolError(Exception):
    """A failure the model sees (an ``isError`` result with this message)."""


class InvalidArguments(ToolError):
    """The arguments are unusable; the model sees why and can correct them."""


class NotFound(Exception):
    """Raised by a resource function: there is no such resource (the client gets MCP's
    resource-not-found error, -32002)."""


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


class _Content:
    """A content block other than text (a tool may return one, or several in an Output)."""

    _portcullis_content = True

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __repr__(self):
        return f"{type(self).__name__}({vars(self)!r})"


class Image(_Content):
    """An image: its bytes and media type (``image/png``)."""

    def __init__(self, data, mime_type):
        self.data, self.mime_type = bytes(data), mime_type


class Audio(_Content):
    """Audio: its bytes and media type (``audio/wav``)."""

    def __init__(self, data, mime_type):
        self.data, self.mime_type = bytes(data), mime_type


class ResourceLink(_Content):
    """A link to a resource the client may read later."""

    def __init__(self, uri, name, title=None, description=None, mime_type=None):
        self.uri, self.name, self.title = uri, name, title
        self.description, self.mime_type = description, mime_type


class EmbeddedResource(_Content):
    """A resource's contents inside a result: ``text`` or ``blob`` (bytes)."""

    def __init__(self, uri, text=None, blob=None, mime_type=None):
        if (text is None) == (blob is None):
            raise TypeError("EmbeddedResource takes text or blob, one of them")
        self.uri, self.text, self.mime_type = uri, text, mime_type
        self.blob = None if blob is None else bytes(blob)


class Output(_Content):
    """A result with several content blocks (strings and Image, Audio, ResourceLink,
    EmbeddedResource), structured content, or ``is_error``."""

    def __init__(self, text=None, structured=None, is_error=False, content=()):
        self.content = ([] if text is None else [text]) + list(content)
        self.structured = structured
        self.is_error = is_error

    @property
    def texts(self):
        return [c for c in self.content if isinstance(c, str)]

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


def notify_lists_changed(tools=False, prompts=False, resources=False):
    """Tell connected clients that this plugin's lists changed."""
    _host.host().notify_lists_changed(
        {k for k, v in {"tools": tools, "prompts": prompts, "resources": resources}.items() if v})


def notify_resource_updated(uri):
    """Tell clients subscribed to ``uri`` that it changed."""
    _host.host().notify_resource_updated(uri)


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

    @property
    def client(self):
        """What the client can answer: ``{"sampling": bool, "elicitation": bool, "roots":
        bool}``."""
        features = self._call.get("client") or {}
        return {k: bool(features.get(k)) for k in ("sampling", "elicitation", "roots")}

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

    def roots(self, key="roots"):
        """The client's roots (``roots/list``): a list of ``{"uri", "name"?}``; the first time
        it raises NeedInput, which you let propagate."""
        answer = self.answer(key)
        if answer is None:
            raise NeedInput(key, "roots", None, self._keep)
        return list(answer.get("roots", []))


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
    wrapped: bool
    task: tuple
    approval: object


@dataclasses.dataclass(frozen=True)
class Approval:
    """What approving one call of a tool takes (RFC 9396 Rich Authorization Requests): an
    ``authorization_details`` entry of ``detail_type`` (e.g. ``"payment_refund"``) binding the
    values of the ``bind`` arguments (empty: the digest of all arguments), good for one call
    (``single_use``) within ``max_age_secs`` of its token being issued."""

    detail_type: str
    bind: tuple = ()
    single_use: bool = True
    max_age_secs: int = 300

    def checked(self, tool, input_schema):
        """This rule, checked as the gateway checks it when it loads the plugin."""
        def wrong(why):
            return ValueError(f"tool `{tool}`: approval: {why}")

        if not isinstance(self.detail_type, str) or not re.fullmatch(r"[A-Za-z0-9_.:/-]{1,128}", self.detail_type):
            raise wrong("detail_type must match [A-Za-z0-9_.:/-]{1,128}")
        bind = list(self.bind)
        if len(bind) > 32:
            raise wrong("an approval binds at most 32 arguments")
        for i, name in enumerate(bind):
            if name in bind[:i]:
                raise wrong(f"binds `{name}` twice")
            if name not in input_schema.get("properties", {}):
                raise wrong(f"binds `{name}`, which the tool's parameters do not name")
        if not isinstance(self.single_use, bool):
            raise wrong("single_use must be a bool")
        if not isinstance(self.max_age_secs, int) or not 1 <= self.max_age_secs <= 86400:
            raise wrong("max_age_secs must be 1 to 86400 seconds")
        return Approval(self.detail_type, tuple(bind), self.single_use, self.max_age_secs)


_TASK_SUPPORT = ("optional", "required")
_TASK_INPUT = ("in-task", "before-task")


def _synchronous(kind, function):
    """Refuse an ``async def``: a plugin call runs to its end in one pass; there is no event
    loop to await in (host calls such as ``fetch`` simply block)."""
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(
            f"{kind} `{function.__name__}` is `async def`: plugin functions run synchronously "
            "(host calls such as fetch block until they answer); write `def` and drop `await`")
    return function


def _failure(what, error):
    """An unexpected exception: its message for the client, its traceback for the gateway's
    log (the plugin's stderr)."""
    print(f"{what} raised:", file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)
    return ("failed", f"{what} failed: {type(error).__name__}: {error}")


class Plugin:
    """What a plugin offers. Decorate functions with ``tool``, ``resource`` and ``prompt``,
    then export: ``Tools, Resources, Prompts, Completion, Tasks, Approvals =
    plugin.exports()``."""

    def __init__(self):
        self.tools = {}
        self.resources = {}
        self.templates = []
        self.prompts = {}

    def tool(self, name=None, title=None, scopes=(), read_only=None, destructive=None,
             idempotent=None, open_world=None, task=None, task_input="in-task", approval=None):
        """Register ``function(ctx, **arguments)`` as a tool; its docstring is the
        description, its type hints the schemas (a TypedDict, dataclass or dict return value
        is structured output with an outputSchema; a list or number is structured as
        ``{"result": ...}``). ``task``: ``"optional"`` or ``"required"`` makes it a tool that
        may run as an MCP Task (``task_input``: where its questions are answered, ``"in-task"``
        or ``"before-task"``). ``approval``: an ``Approval`` makes each call need a person's
        approval: the gateway refuses a caller whose token does not carry it, and the function
        sees what was approved in ``ctx.claim("authorization_details")``."""
        if approval is not None and not isinstance(approval, Approval):
            raise TypeError(f"approval must be an Approval, not {type(approval).__name__}")
        if task is not None and task not in _TASK_SUPPORT:
            raise ValueError(f"task must be one of {_TASK_SUPPORT}, not {task!r}")
        if task_input not in _TASK_INPUT:
            raise ValueError(f"task_input must be one of {_TASK_INPUT}, not {task_input!r}")

        def register(function):
            _synchronous("tool", function)
            tool_name = name or function.__name__
            hints = {
                "read_only_hint": read_only,
                "destructive_hint": destructive,
                "idempotent_hint": idempotent,
                "open_world_hint": open_world,
            }
            output, wrapped = _schema.output_schema(function)
            input_schema = _schema.parameters_schema(function)
            self.tools[tool_name] = _Tool(
                name=tool_name,
                function=function,
                title=title,
                description=(function.__doc__ or "").strip(),
                scopes=list(scopes),
                annotations={k: v for k, v in hints.items() if v is not None},
                input_schema=input_schema,
                output_schema=output,
                wrapped=wrapped,
                task=None if task is None else (task, task_input),
                approval=None if approval is None else approval.checked(tool_name, input_schema),
            )
            return function

        return register

    def task_tools(self):
        """``[(name, support, input)]`` of the tools that may run as tasks."""
        return [(t.name, *t.task) for t in self.tools.values() if t.task is not None]

    def approval_rules(self):
        """``[(name, Approval)]`` of the tools a person must approve call by call."""
        return [(t.name, t.approval) for t in self.tools.values() if t.approval is not None]

    def resource(self, uri, name=None, mime_type=None, scopes=(), title=None):
        """Register ``function(ctx) -> str | bytes`` as the resource at ``uri``."""

        def register(function):
            _synchronous("resource", function)
            self.resources[uri] = {
                "uri": uri,
                "name": name or function.__name__,
                "title": title,
                "description": (function.__doc__ or "").strip() or None,
                "mime_type": mime_type,
                "scopes": list(scopes),
                "function": function,
            }
            return function

        return register

    def resource_template(self, uri_template, name=None, mime_type=None, scopes=(), complete=None,
                          title=None):
        """Register ``function(ctx, **variables) -> str | bytes`` for the URIs matching
        ``uri_template`` (RFC 6570 level 1, e.g. ``notes://{id}``); ``complete`` maps a
        variable to ``completer(ctx, prefix) -> list[str]``. Raise ``NotFound`` for a URI that
        matches but names nothing."""

        def register(function):
            _synchronous("resource template", function)
            self.templates.append({
                "uri_template": uri_template,
                "name": name or function.__name__,
                "title": title,
                "description": (function.__doc__ or "").strip() or None,
                "mime_type": mime_type,
                "scopes": list(scopes),
                "complete": dict(complete or {}),
                "function": function,
            })
            return function

        return register

    def prompt(self, name=None, scopes=(), complete=None, title=None):
        """Register ``function(ctx, **string_arguments) -> str | list[(role, str | content)]``
        (an argument's description: ``Annotated[str, "what it is"]``); ``complete`` maps an
        argument to ``completer(ctx, prefix) -> list[str]``."""

        def register(function):
            _synchronous("prompt", function)
            parameters = _schema.parameters_schema(function)
            self.prompts[name or function.__name__] = {
                "name": name or function.__name__,
                "title": title,
                "description": (function.__doc__ or "").strip(),
                "arguments": [
                    (arg, arg in parameters["required"], schema.get("description"))
                    for arg, schema in parameters["properties"].items()
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
        except (ToolError, DownstreamError) as e:
            return ("failed", str(e))
        except Exception as e:  # noqa: BLE001 - the plugin's own bug: reported, not a trap
            return _failure(f"tool `{name}`", e)
        return ("done", _result(result, tool))

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
        except NotFound:
            return ("not-found",)
        except (ToolError, DownstreamError) as e:
            return ("failed", str(e))
        except Exception as e:  # noqa: BLE001
            return _failure(f"resource `{uri}`", e)
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
        except Exception as e:  # noqa: BLE001
            return _failure(f"prompt `{name}`", e)
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
        """The classes componentize-py looks for in the app module: ``Tools, Resources,
        Prompts, Completion, Tasks, Approvals = plugin.exports()`` (outside a component, e.g.
        in native tests, six Nones)."""
        try:
            from ._component import exports
        except ImportError:
            return (None, None, None, None, None, None)
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


def _result(value, tool):
    """A tool's return value as (content blocks, structured, is_error): a string, an Output,
    a content block, or a JSON value (structured when the tool declares an outputSchema, or
    a dict; wrapped as ``{"result": value}`` when the schema says so)."""
    if isinstance(value, Output):
        return (value.content, value.structured, value.is_error)
    if isinstance(value, (str, _Content)):
        return ([value], None, False)
    value = _plain(value)
    text = json.dumps(value)
    if tool.wrapped:
        return ([text], {"result": value}, False)
    structured = tool.output_schema is not None or isinstance(value, dict)
    return ([text], value if structured else None, False)


def _plain(value):
    """Dataclasses (nested, in lists too) as dicts, Enum members as their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, _schema.enum.Enum):
        return value.value
    return value
