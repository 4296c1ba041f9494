"""The component boundary: the WIT exports componentize-py calls, and the host imports.
Only importable inside a component built for the `any-plugin` world (`wit_world` exists)."""

import json

from componentize_py_types import Err
from wit_world import exports as _exports
from wit_world.exports import approvals, completion, prompts, resources, tasks, tools
from wit_world.imports import downstream, host, types

from . import (Audio, DownstreamError, EmbeddedResource, Image, Output, Response,
               ResourceLink)

_LEVELS = {level.name.lower(): level for level in host.LogLevel}

_DOWNSTREAM_ERRORS = {
    downstream.Error_UnknownService: "unknown-service",
    downstream.Error_NotGranted: "not-granted",
    downstream.Error_Credential: "credential",
    downstream.Error_Blocked: "blocked",
    downstream.Error_Timeout: "timeout",
    downstream.Error_TooLarge: "too-large",
    downstream.Error_Transport: "transport",
}


class ComponentHost:
    """The host imports, as the SDK's plain-Python calls use them."""

    def log(self, level, logger, message):
        host.log(_LEVELS.get(level, host.LogLevel.INFO), logger, message)

    def progress(self, progress, total, message):
        host.progress(float(progress), None if total is None else float(total), message)

    def notify_lists_changed(self, kinds):
        flags = host.ListKinds(0)
        for kind in kinds:
            flags |= getattr(host.ListKinds, kind.upper())
        host.notify_lists_changed(flags)

    def notify_resource_updated(self, uri):
        host.notify_resource_updated(uri)

    def fetch(self, service, method, path, headers, body):
        try:
            r = downstream.fetch(service, downstream.Request(method, path, headers, body))
        except Err as e:
            kind = _DOWNSTREAM_ERRORS.get(type(e.value), "transport")
            raise DownstreamError(kind, getattr(e.value, "value", "") or "") from None
        return Response(r.status, r.body, r.headers)


def _call(ctx):
    return {
        "tenant": ctx.tenant,
        "issuer": ctx.issuer,
        "subject": ctx.subject,
        "client_id": ctx.client_id,
        "scopes": list(ctx.scopes),
        "claims": list(ctx.claims),
        "request_id": ctx.request_id,
        "config": list(ctx.config),
        "client": {
            "sampling": types.ClientFeatures.SAMPLING in ctx.client,
            "elicitation": types.ClientFeatures.ELICITATION in ctx.client,
            "roots": types.ClientFeatures.ROOTS in ctx.client,
        },
    }


def _content(block):
    """One SDK content block (a string, Image, Audio, ResourceLink, EmbeddedResource) as WIT."""
    if isinstance(block, str):
        return types.Content_Text(block)
    if isinstance(block, Image):
        return types.Content_Image(types.Binary(block.data, block.mime_type))
    if isinstance(block, Audio):
        return types.Content_Audio(types.Binary(block.data, block.mime_type))
    if isinstance(block, ResourceLink):
        return types.Content_ResourceLink(types.ResourceLink(
            block.uri, block.name, block.title, block.description, block.mime_type))
    if isinstance(block, EmbeddedResource):
        body = (types.ResourceBody_Text(block.text) if block.text is not None
                else types.ResourceBody_Blob(block.blob))
        return types.Content_Resource(types.ResourceContents(block.uri, block.mime_type, body))
    if isinstance(block, Output):
        raise TypeError("an Output cannot be a content block of another")
    return types.Content_Text(json.dumps(block))


def _continuation(c):
    if c is None:
        return None
    return {"responses": {r.key: r.value for r in c.responses}, "state": c.state}


def _input_required(need):
    if need.kind == "elicit":
        message, requested = need.payload
        request = types.InputRequest_Elicit(types.Elicitation(message, requested))
    elif need.kind == "roots":
        request = types.InputRequest_ListRoots()
    else:
        request = types.InputRequest_Sample(need.payload)
    return types.InputRequired([types.KeyedRequest(need.key, request)], need.state)


def _refuse(outcome, unknown, invalid, failed):
    """Raise the error arm of a WIT result for a plain outcome that is neither done nor input:
    ``unknown()`` for ("unknown",) / ("not-found",), ``invalid(message)``, ``failed(message)``."""
    if outcome[0] in ("unknown", "not-found"):
        raise Err(unknown())
    if outcome[0] == "invalid":
        raise Err(invalid(outcome[1]))
    raise Err(failed(outcome[1]))


def _dumps(value):
    return None if value is None else json.dumps(value)


def exports(plugin):
    """The six export classes for `plugin`."""

    class Tools(_exports.Tools):
        def list_tools(self):
            return [
                tools.Tool(
                    name=t.name,
                    title=t.title,
                    description=t.description,
                    input_schema=json.dumps(t.input_schema),
                    output_schema=_dumps(t.output_schema),
                    annotations=tools.ToolAnnotations(
                        title=None,
                        read_only_hint=t.annotations.get("read_only_hint"),
                        destructive_hint=t.annotations.get("destructive_hint"),
                        idempotent_hint=t.annotations.get("idempotent_hint"),
                        open_world_hint=t.annotations.get("open_world_hint"),
                    )
                    if t.annotations
                    else None,
                    required_scopes=t.scopes,
                )
                for t in plugin.tools.values()
            ]

        def call_tool(self, ctx, name, arguments, continuation):
            outcome = plugin.call_tool(_call(ctx), name, arguments, _continuation(continuation))
            if outcome[0] == "done":
                blocks, structured, is_error = outcome[1]
                return tools.CallOutcome_Done(
                    tools.ToolResult([_content(b) for b in blocks], _dumps(structured), is_error)
                )
            if outcome[0] == "input":
                return tools.CallOutcome_InputRequired(_input_required(outcome[1]))
            _refuse(outcome, tools.ToolError_UnknownTool, tools.ToolError_InvalidArguments, tools.ToolError_Failed)

    class Resources(_exports.Resources):
        def list_resources(self):
            return [
                resources.Resource(r["uri"], r["name"], r["title"], r["description"], r["mime_type"], None,
                                   r["scopes"])
                for r in plugin.resources.values()
            ]

        def list_resource_templates(self):
            return [
                resources.ResourceTemplate(t["uri_template"], t["name"], t["title"], t["description"],
                                           t["mime_type"], t["scopes"])
                for t in plugin.templates
            ]

        def read_resource(self, ctx, uri, continuation):
            outcome = plugin.read_resource(_call(ctx), uri, _continuation(continuation))
            if outcome[0] == "done":
                body, mime = outcome[1]
                contents = types.ResourceBody_Blob(body) if isinstance(body, bytes) else types.ResourceBody_Text(body)
                return resources.ReadOutcome_Done([types.ResourceContents(uri, mime, contents)])
            if outcome[0] == "input":
                return resources.ReadOutcome_InputRequired(_input_required(outcome[1]))
            if outcome[0] == "not-found":
                raise Err(resources.ResourceError_NotFound())
            raise Err(resources.ResourceError_Failed(outcome[1]))

    class Prompts(_exports.Prompts):
        def list_prompts(self):
            return [
                prompts.Prompt(
                    p["name"],
                    p["title"],
                    p["description"],
                    [prompts.PromptArgument(a, None, described, required)
                     for a, required, described in p["arguments"]],
                    p["scopes"],
                )
                for p in plugin.prompts.values()
            ]

        def get_prompt(self, ctx, name, arguments, continuation):
            outcome = plugin.get_prompt(_call(ctx), name, arguments, _continuation(continuation))
            if outcome[0] == "done":
                roles = {"user": prompts.Role.USER, "assistant": prompts.Role.ASSISTANT}
                messages = [prompts.PromptMessage(roles[r], _content(b)) for r, b in outcome[1]]
                return prompts.GetOutcome_Done(prompts.PromptResult(None, messages))
            if outcome[0] == "input":
                return prompts.GetOutcome_InputRequired(_input_required(outcome[1]))
            _refuse(outcome, prompts.PromptError_UnknownPrompt, prompts.PromptError_InvalidArguments,
                    prompts.PromptError_Failed)

    class Completion(_exports.Completion):
        def complete(self, ctx, reference, argument_name, argument_value, context_arguments):
            kind = "prompt" if isinstance(reference, completion.Reference_Prompt) else "template"
            try:
                values = plugin.complete(_call(ctx), (kind, reference.value), argument_name, argument_value)
            except Exception as e:  # a completer's failure is the plugin's error string
                raise Err(str(e)) from None
            return completion.CompletionResult(values, None, False)

    class Tasks(_exports.Tasks):
        def task_tools(self):
            support = {"optional": tasks.TaskSupport.OPTIONAL, "required": tasks.TaskSupport.REQUIRED}
            where = {"in-task": tasks.TaskInput.IN_TASK, "before-task": tasks.TaskInput.BEFORE_TASK}
            return [tasks.TaskTool(n, support[s], where[i]) for n, s, i in plugin.task_tools()]

    class Approvals(_exports.Approvals):
        def approval_rules(self):
            return [
                approvals.ApprovalRule(name, a.detail_type, list(a.bind), a.single_use, a.max_age_secs)
                for name, a in plugin.approval_rules()
            ]

    return Tools, Resources, Prompts, Completion, Tasks, Approvals
