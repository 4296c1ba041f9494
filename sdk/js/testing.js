// Test plugin code natively (`node --test`), without a gateway:
//
//   import { TestHost } from "portcullis-sdk/testing";
//   const host = new TestHost({ subject: "ada", scopes: ["words:read"] });
//   const r = host.callTool(plugin, "words.count", { text: "a b" });
//   assert.equal(r.text, "2 words");
//
// Like the gateway, `callTool` checks arguments against the tool's input schema before it
// runs and a result against its output schema after (`OutputMismatch`: the gateway would
// refuse that result). Host imports (logs, progress, notifications, downstream) are answered
// by the test host: `host.logs`, `host.progressReports`, `host.notifications`,
// `host.requests`, and `downstream: { notes: (request) => new Response(200, "...") }` (a stub
// may throw a DownstreamError; or `{ notes: { "GET /notes": stub } }` by method and path).
//
// `McpTestClient` speaks MCP to a plugin in-process, as the gateway serves it (`tools/list`,
// `tools/call`, `resources/read`, `prompts/get`, `completion/complete` ...), with the
// gateway's errors and input rounds.

import { DownstreamError, InvalidArguments, NeedInput, ToolError } from "./index.js";
import { install, uninstall } from "./host.js";

/** A tool's result does not match its output schema: the gateway would refuse it. */
export class OutputMismatch extends Error {}

/** A finished tool call as the client would see it. */
export class Result {
  constructor({ content, structured, isError }) {
    this.content = content;
    this.structured = structured;
    this.isError = isError;
  }

  get text() {
    return this.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");
  }
}

/**
 * A stand-in for the gateway. By default tenant `test`, issuer `https://issuer.test`, subject
 * `tester`, no scopes, and a client that can answer every kind of input request
 * (`client: { sampling: false }` takes one away).
 */
export class TestHost {
  constructor({ tenant = "test", issuer = "https://issuer.test", subject = "tester", clientId, scopes = [], config = {}, claims = {}, client = {}, downstream = {} } = {}) {
    this.call = {
      tenant,
      issuer,
      subject,
      clientId,
      scopes: [...scopes],
      claims: Object.entries(claims).map(([k, v]) => [k, JSON.stringify(v)]),
      requestId: "1",
      client: { sampling: true, elicitation: true, roots: true, ...client },
      config: Object.entries(config),
    };
    this.stubs = { ...downstream };
    this.logs = [];
    this.progressReports = [];
    this.notifications = [];
    this.requests = [];
    this.answers = {};
    this.state = undefined;
  }

  // The host imports.
  log(level, logger, message) {
    this.logs.push({ level, logger, message });
  }

  progress(progress, total, message) {
    this.progressReports.push({ progress, total, message });
  }

  notifyListsChanged(kinds) {
    this.notifications.push({ listsChanged: Object.keys(kinds).filter((k) => kinds[k]).sort() });
  }

  notifyResourceUpdated(uri) {
    this.notifications.push({ resourceUpdated: uri });
  }

  fetch(service, request) {
    this.requests.push({ service, ...request });
    let stub = this.stubs[service];
    if (stub && typeof stub === "object") {
      const route = request.path.split("?")[0];
      stub = stub[`${request.method} ${request.path}`] || stub[`${request.method} ${route}`];
    }
    if (!stub) throw new DownstreamError("unknown-service", `no test stub for \`${service}\` ${request.method} ${request.path}`);
    return stub(request);
  }

  /** The client's answer to an input request (a NeedInput), for the next call. */
  answer(need, value) {
    this.answers[need.key] = JSON.stringify(value);
    this.state = need.state;
  }

  within(run) {
    install(this);
    try {
      return run();
    } finally {
      uninstall();
    }
  }

  takeContinuation() {
    if (!Object.keys(this.answers).length && this.state === undefined) return undefined;
    const c = { responses: this.answers, state: this.state };
    this.answers = {};
    this.state = undefined;
    return c;
  }

  /**
   * Call tool `name` with `args` (an object): a Result; throws InvalidArguments when they
   * break its input schema (the gateway's check), OutputMismatch when the result breaks its
   * output schema, a ToolError for unknown tools and failures, and the NeedInput for input
   * requests (answer it and call again).
   */
  callTool(plugin, name, args = {}) {
    const outcome = this.within(() => plugin.callTool(this.call, name, JSON.stringify(args), this.takeContinuation()));
    if (outcome.invalid !== undefined) throw new InvalidArguments(`Invalid arguments for tool \`${name}\`: ${outcome.invalid}`);
    const result = settle(outcome, `tool \`${name}\``, (r) => new Result(r));
    const tool = plugin.tools.get(name);
    if (tool.output && !result.isError) {
      if (result.structured === undefined) throw new OutputMismatch(`tool \`${name}\` declares an output schema but returned no structured content`);
      const problems = tool.output.check(result.structured);
      if (problems.length) throw new OutputMismatch(`tool \`${name}\` returned a result that does not match its output schema: ${problems.join("; ")}`);
    }
    return result;
  }

  /** Read a resource: { body, mimeType }. */
  readResource(plugin, uri) {
    const outcome = this.within(() => plugin.readResource(this.call, uri, this.takeContinuation()));
    return settle(outcome, `resource \`${uri}\``, (r) => r);
  }

  /** Get a prompt: a list of [role, text or content block]. */
  getPrompt(plugin, name, args = {}) {
    const outcome = this.within(() => plugin.getPrompt(this.call, name, Object.entries(args), this.takeContinuation()));
    return settle(outcome, `prompt \`${name}\``, (r) => r);
  }

  /** Completions for `argName` of `{ prompt: name }` or `{ resourceTemplate: uriTemplate }`. */
  complete(plugin, reference, argName, prefix) {
    return this.within(() => plugin.complete(this.call, reference, argName, prefix));
  }
}

const base64 = (data) => Buffer.from(data).toString("base64");

/** One content block as MCP JSON. */
export function contentJson(block) {
  if (typeof block === "string") return { type: "text", text: block };
  if (block.type === "image" || block.type === "audio") {
    if (typeof block.data === "string" && !/^[A-Za-z0-9+/]*={0,2}$/.test(block.data)) {
      throw new TypeError("image/audio `data` text must be base64");
    }
    return { type: block.type, data: typeof block.data === "string" ? block.data : base64(block.data), mimeType: block.mimeType };
  }
  if (block.type === "resource") {
    const { uri, mimeType, text, blob } = block;
    return { type: "resource", resource: strip({ uri, mimeType, text, blob: blob && base64(blob) }) };
  }
  return strip({ ...block });
}

const strip = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
const refused = (code, message) => ({ error: { code, message } });
const isError = (text) => ({ content: [{ type: "text", text }], isError: true });

function inputRound(need) {
  const r = need.request;
  const request = r.elicit
    ? { method: "elicitation/create", params: { message: r.elicit.message, requestedSchema: JSON.parse(r.elicit.requestedSchema) } }
    : r.sample !== undefined
      ? { method: "sampling/createMessage", params: JSON.parse(r.sample) }
      : { method: "roots/list", params: {} };
  return { inputRequests: { [need.key]: request }, requestState: JSON.stringify({ state: need.state ?? null }) };
}

/** A tool's `_meta` as the gateway lists it: its scopes, and whether it may become a task. */
function meta(t) {
  const m = {};
  if (t.scopes && t.scopes.length) m["dev.portcullis/requiredScopes"] = t.scopes;
  if (t.task) m["io.modelcontextprotocol/tasks"] = { taskSupport: t.task.support };
  return Object.keys(m).length ? m : undefined;
}

/**
 * MCP spoken to a plugin in-process, as the gateway serves it: `request(method, params)`
 * returns the JSON-RPC answer, `{ result }` or `{ error: { code, message } }`. A call that
 * needs input answers the 2026-07-28 way (`inputRequests`, `requestState`); send
 * `inputResponses` and the `requestState` back to go on.
 */
export class McpTestClient {
  constructor(plugin, host = new TestHost()) {
    this.plugin = plugin;
    this.host = host;
  }

  request(method, params = {}) {
    const handlers = {
      initialize: (p) => this.initialize(p),
      ping: () => ({}),
      "tools/list": () => this.toolsList(),
      "tools/call": (p) => this.callTool(p),
      "resources/list": () => ({ resources: [...this.plugin.resources.values()].map((r) => strip({ uri: r.uri, name: r.name, title: r.title, description: r.description, mimeType: r.mimeType })) }),
      "resources/templates/list": () => ({ resourceTemplates: this.plugin.templates.map((t) => strip({ uriTemplate: t.uriTemplate, name: t.name, title: t.title, description: t.description, mimeType: t.mimeType })) }),
      "resources/read": (p) => this.read(p),
      "prompts/list": () => ({ prompts: [...this.plugin.prompts.values()].map((p) => strip({ name: p.name, title: p.title, description: p.description, arguments: p.arguments.map((a) => strip({ name: a.name, title: a.title, description: a.description, required: Boolean(a.required) })) })) }),
      "prompts/get": (p) => this.prompt(p),
      "completion/complete": (p) => this.complete(p),
    };
    const handler = handlers[method];
    if (!handler) return refused(-32601, `method not found: ${method}`);
    const out = handler(params);
    return out && out.error ? out : { result: out };
  }

  initialize(params) {
    const capabilities = { tools: { listChanged: true } };
    if (this.plugin.resources.size || this.plugin.templates.length) capabilities.resources = { listChanged: true, subscribe: true };
    if (this.plugin.prompts.size) capabilities.prompts = { listChanged: true };
    capabilities.completions = {};
    return { protocolVersion: params.protocolVersion || "2026-07-28", capabilities, serverInfo: { name: "portcullis-test", version: "0" } };
  }

  toolsList() {
    return {
      tools: [...this.plugin.tools.values()].map((t) => {
        const hints = strip({ readOnlyHint: t.readOnly, destructiveHint: t.destructive, idempotentHint: t.idempotent, openWorldHint: t.openWorld });
        return strip({
          name: t.name,
          title: t.title,
          description: t.description || "",
          inputSchema: t.input.toJSON(),
          outputSchema: t.output && t.output.toJSON(),
          annotations: Object.keys(hints).length ? hints : undefined,
          _meta: meta(t),
        });
      }),
    };
  }

  withInputs(params) {
    for (const [key, value] of Object.entries(params.inputResponses || {})) this.host.answers[key] = JSON.stringify(value);
    if (params.requestState !== undefined) {
      try {
        this.host.state = JSON.parse(params.requestState).state ?? undefined;
      } catch {
        this.host.state = undefined;
      }
    }
  }

  callTool(params) {
    const name = params.name;
    if (!this.plugin.tools.has(name)) return refused(-32602, `unknown tool: ${name}`);
    this.withInputs(params);
    try {
      const r = this.host.callTool(this.plugin, name, params.arguments || {});
      return strip({ content: r.content.map(contentJson), structuredContent: r.structured, isError: r.isError });
    } catch (e) {
      if (e instanceof NeedInput) return inputRound(e);
      if (e instanceof OutputMismatch) return isError(`${e.message} (the gateway refuses such a result)`);
      if (e instanceof ToolError) return isError(e.message);
      throw e;
    }
  }

  read(params) {
    this.withInputs(params);
    const outcome = this.host.within(() => this.plugin.readResource(this.host.call, params.uri, this.host.takeContinuation()));
    if (outcome.notFound) return refused(-32002, `resource not found: ${params.uri}`);
    if (outcome.input) return inputRound(outcome.input);
    if (outcome.failed !== undefined) return refused(-32603, outcome.failed);
    const { body, mimeType } = outcome.done;
    const blob = typeof body === "string" ? undefined : base64(body);
    return { contents: [strip({ uri: params.uri, mimeType, text: blob ? undefined : body, blob })] };
  }

  prompt(params) {
    if (!this.plugin.prompts.has(params.name)) return refused(-32602, `unknown prompt: ${params.name}`);
    this.withInputs(params);
    try {
      const messages = this.host.getPrompt(this.plugin, params.name, params.arguments || {});
      return { messages: messages.map(([role, block]) => ({ role, content: contentJson(block) })) };
    } catch (e) {
      if (e instanceof NeedInput) return inputRound(e);
      if (e instanceof InvalidArguments) return refused(-32602, e.message);
      return refused(-32603, e.message);
    }
  }

  complete(params) {
    const ref = params.ref || {};
    const reference = ref.type === "ref/prompt" ? { prompt: ref.name } : { resourceTemplate: ref.uri };
    const arg = params.argument || {};
    return { completion: { values: this.host.complete(this.plugin, reference, arg.name, arg.value ?? ""), hasMore: false } };
  }
}

function settle(outcome, what, done) {
  if (outcome.done) return done(outcome.done);
  if (outcome.input) throw outcome.input;
  if (outcome.unknown || outcome.notFound) throw new ToolError(`unknown ${what}`);
  if (outcome.invalid !== undefined) throw new InvalidArguments(outcome.invalid);
  throw new ToolError(outcome.failed);
}
