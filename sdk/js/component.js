// The component boundary: the WIT imports and exports in componentize-js's shapes (records
// as camelCase objects, variants as { tag, val }, options as undefined, a result's error
// thrown). Only the build's entry module imports this file, before the app module, so the
// app stays importable natively (`node --test`). Owns the conversions and nothing else.

import * as wasiHost from "portcullis:plugin/host@0.2.0";
import * as wasiDownstream from "portcullis:plugin/downstream@0.2.0";

import { DownstreamError, Response } from "./index.js";
import { install, setBoundary } from "./host.js";

install({
  log(level, logger, message) {
    wasiHost.log(level, logger, message);
  },
  progress(progress, total, message) {
    wasiHost.progress(progress, total, message);
  },
  notifyListsChanged(kinds) {
    wasiHost.notifyListsChanged(kinds);
  },
  notifyResourceUpdated(uri) {
    wasiHost.notifyResourceUpdated(uri);
  },
  fetch(service, request) {
    let r;
    try {
      r = wasiDownstream.fetch(service, request);
    } catch (e) {
      const err = e && e.payload !== undefined ? e.payload : e;
      if (err && typeof err.tag === "string") throw new DownstreamError(err.tag, err.val || "");
      throw e;
    }
    return new Response(r.status, r.body, r.headers);
  },
});

function call(ctx) {
  return {
    tenant: ctx.tenant,
    issuer: ctx.issuer,
    subject: ctx.subject,
    clientId: ctx.clientId,
    scopes: ctx.scopes,
    claims: ctx.claims,
    requestId: ctx.requestId,
    client: ctx.client,
    config: ctx.config,
  };
}

function continuation(c) {
  if (!c) return undefined;
  return { responses: Object.fromEntries(c.responses.map((r) => [r.key, r.value])), state: c.state };
}

function inputRequired(need) {
  const request = need.request.elicit
    ? { tag: "elicit", val: need.request.elicit }
    : need.request.sample !== undefined
      ? { tag: "sample", val: need.request.sample }
      : { tag: "list-roots" };
  return { requests: [{ key: need.key, request }], state: need.state };
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Image and audio data: bytes, or base64 text as MCP writes it (decoded here, as TestHost reads it). */
function bytes(data) {
  if (typeof data !== "string") return data;
  const digits = data.replace(/=+$/, "");
  const out = new Uint8Array(Math.floor((digits.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let at = 0;
  for (const c of digits) {
    const d = BASE64.indexOf(c);
    if (d < 0) throw new TypeError("image/audio `data` text must be base64");
    value = (value << 6) | d;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (value >> bits) & 0xff;
    }
  }
  return out;
}

function content(block) {
  switch (block.type) {
    case "text":
      return { tag: "text", val: block.text };
    case "image":
    case "audio":
      return { tag: block.type, val: { data: bytes(block.data), mimeType: block.mimeType } };
    case "resource_link":
      return {
        tag: "resource-link",
        val: { uri: block.uri, name: block.name, title: block.title, description: block.description, mimeType: block.mimeType },
      };
    case "resource":
      return { tag: "resource", val: contents(block.uri, block.blob ?? block.text, block.mimeType) };
    default:
      throw new TypeError(`unknown content type \`${block.type}\``);
  }
}

function contents(uri, body, mimeType) {
  const wit = typeof body === "string" ? { tag: "text", val: body } : { tag: "blob", val: body };
  return { uri, mimeType, body: wit };
}

const json = (value) => (value === undefined ? undefined : JSON.stringify(value));

function annotations(t) {
  const hints = {
    title: undefined,
    readOnlyHint: t.readOnly,
    destructiveHint: t.destructive,
    idempotentHint: t.idempotent,
    openWorldHint: t.openWorld,
  };
  return Object.values(hints).some((v) => v !== undefined) ? hints : undefined;
}

/** Throw the error arm of a WIT result for a plain outcome that is not done or input. */
function fail(outcome, unknownTag) {
  if (outcome.unknown) throw { tag: unknownTag };
  if (outcome.notFound) throw { tag: "not-found" };
  if (outcome.invalid !== undefined) throw { tag: "invalid-arguments", val: outcome.invalid };
  throw { tag: "failed", val: outcome.failed };
}

setBoundary((plugin) => ({
  tools: {
    listTools() {
      return [...plugin.tools.values()].map((t) => ({
        name: t.name,
        title: t.title,
        description: t.description || "",
        inputSchema: JSON.stringify(t.input),
        outputSchema: json(t.output),
        annotations: annotations(t),
        requiredScopes: t.scopes || [],
      }));
    },
    callTool(ctx, name, args, cont) {
      const outcome = plugin.callTool(call(ctx), name, args, continuation(cont));
      if (outcome.done) {
        const r = outcome.done;
        return {
          tag: "done",
          val: { content: r.content.map(content), structuredContent: json(r.structured), isError: r.isError },
        };
      }
      if (outcome.input) return { tag: "input-required", val: inputRequired(outcome.input) };
      return fail(outcome, "unknown-tool");
    },
  },
  resources: {
    listResources() {
      return [...plugin.resources.values()].map((r) => ({
        uri: r.uri,
        name: r.name,
        title: r.title,
        description: r.description,
        mimeType: r.mimeType,
        size: undefined,
        requiredScopes: r.scopes || [],
      }));
    },
    listResourceTemplates() {
      return plugin.templates.map((t) => ({
        uriTemplate: t.uriTemplate,
        name: t.name,
        title: t.title,
        description: t.description,
        mimeType: t.mimeType,
        requiredScopes: t.scopes || [],
      }));
    },
    readResource(ctx, uri, cont) {
      const outcome = plugin.readResource(call(ctx), uri, continuation(cont));
      if (outcome.done) return { tag: "done", val: [contents(uri, outcome.done.body, outcome.done.mimeType)] };
      if (outcome.input) return { tag: "input-required", val: inputRequired(outcome.input) };
      return fail(outcome);
    },
  },
  prompts: {
    listPrompts() {
      return [...plugin.prompts.values()].map((p) => ({
        name: p.name,
        title: p.title,
        description: p.description || "",
        arguments: p.arguments.map((a) => ({
          name: a.name,
          title: a.title,
          description: a.description,
          required: Boolean(a.required),
        })),
        requiredScopes: p.scopes || [],
      }));
    },
    getPrompt(ctx, name, args, cont) {
      const outcome = plugin.getPrompt(call(ctx), name, args, continuation(cont));
      if (outcome.done) {
        const messages = outcome.done.map(([role, block]) => ({
          role,
          content: content(typeof block === "string" ? { type: "text", text: block } : block),
        }));
        return { tag: "done", val: { description: undefined, messages } };
      }
      if (outcome.input) return { tag: "input-required", val: inputRequired(outcome.input) };
      return fail(outcome, "unknown-prompt");
    },
  },
  tasks: {
    taskTools() {
      return plugin.taskTools();
    },
  },
  approvals: {
    approvalRules() {
      return plugin.approvalRules();
    },
  },
  completion: {
    complete(ctx, reference, argName, argValue) {
      const ref = reference.tag === "prompt" ? { prompt: reference.val } : { resourceTemplate: reference.val };
      try {
        const values = plugin.complete(call(ctx), ref, argName, argValue);
        return { values, total: undefined, hasMore: false };
      } catch (e) {
        throw String(e && e.message ? e.message : e);
      }
    },
  },
}));
