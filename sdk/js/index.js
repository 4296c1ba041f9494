// Write Portcullis gateway plugins in JavaScript.
//
//   import { Plugin, s, log } from "portcullis-sdk";
//   const plugin = new Plugin();
//   plugin.tool({
//     name: "words.count", description: "Count the words in a text.", scopes: ["words:read"],
//     input: s.object({ text: s.string("The text to count") }),
//   }, (ctx, { text }) => `${text.split(/\s+/).filter(Boolean).length} words`);
//   export const { tools, resources, prompts, completion, tasks, approvals } = plugin.exports();
//
// Build with `npx portcullis-plugin build app.js -o plugin.wasm` (componentize-js, world
// `any-plugin` of the WIT this SDK ships); test natively with `TestHost` from
// "portcullis-sdk/testing" (`node --test`). Each call runs in a fresh instance: keep no
// state between calls. This module owns the plugin model (tools, resources, prompts, the
// context, errors); the WIT shapes live in component.js, the host imports behind host.js.

import * as s from "./schema.js";
import { current as host, exportsOf } from "./host.js";

export { s };

/** A failure the model sees (an `isError` result with this message). */
export class ToolError extends Error {}

/** The arguments are unusable; the model sees why and can correct them. */
export class InvalidArguments extends ToolError {}

/** Thrown by a resource's read function: there is no such resource (the client gets MCP's resource-not-found error, -32002). */
export class NotFound extends Error {
  constructor(message = "no such resource") {
    super(message);
  }
}

/** The call needs an answer from the client first (thrown by `ctx.elicit` / `ctx.sample`): let it propagate. */
export class NeedInput extends Error {
  constructor(key, request, state) {
    super(`needs input \`${key}\``);
    this.key = key;
    this.request = request;
    this.state = state;
  }
}

/** A downstream request got no answer: `kind` is unknown-service, not-granted, credential, blocked, timeout, too-large or transport. */
export class DownstreamError extends Error {
  constructor(kind, detail = "") {
    super(detail ? `${kind}: ${detail}` : kind);
    this.kind = kind;
    this.detail = detail;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A downstream answer. */
export class Response {
  constructor(status, body = new Uint8Array(), headers = []) {
    this.status = status;
    this.headers = headers;
    this.body = typeof body === "string" ? encoder.encode(body) : body;
  }

  text() {
    return decoder.decode(this.body);
  }

  json() {
    return JSON.parse(this.text());
  }

  /** The value of header `name` (case-insensitive), or undefined. */
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([k]) => k.toLowerCase() === lower);
    return found && found[1];
  }

  /** This response if it is 2xx, else a ToolError naming the status and the start of the body. */
  ok() {
    if (this.status >= 200 && this.status < 300) return this;
    throw new ToolError(`the service answered HTTP ${this.status}: ${this.text().slice(0, 300)}`);
  }
}

/**
 * HTTP to a downstream service the operator granted; the gateway adds the credential (this
 * plugin never sees it). `init`: `{ method, headers: [[name, value]], body, json }`.
 */
export function fetch(service, path, init = {}) {
  const headers = [...(init.headers || [])];
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers.push(["content-type", "application/json"]);
  }
  if (typeof body === "string") body = encoder.encode(body);
  return host().fetch(service, { method: init.method || "GET", path, headers, body });
}

const LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/** Log to the client (if it asked for this level) and the gateway. Never log secrets. */
export function log(message, { level = "info", logger } = {}) {
  if (!LEVELS.includes(level)) throw new TypeError(`unknown log level \`${level}\``);
  host().log(level, logger, String(message));
}

/** Tell connected clients that this plugin's lists changed: `{ tools, prompts, resources }`. */
export function notifyListsChanged({ tools = false, prompts = false, resources = false } = {}) {
  host().notifyListsChanged({ tools, prompts, resources });
}

/** Tell clients subscribed to `uri` that it changed. */
export function notifyResourceUpdated(uri) {
  host().notifyResourceUpdated(String(uri));
}

/** A result with several content blocks, structured content, or `isError`. */
export class Output {
  constructor({ text, content = [], structured, isError = false } = {}) {
    this.content = text === undefined ? [...content] : [{ type: "text", text }, ...content];
    this.structured = structured;
    this.isError = isError;
  }

  static error(text) {
    return new Output({ text, isError: true });
  }
}

/** Who is calling: tenant, issuer, subject, scopes, claims, the operator's configuration. Never a token. */
export class Context {
  constructor(call, continuation) {
    this.call = call;
    this.continuation = continuation || { responses: {}, state: undefined };
    this.kept = undefined;
  }

  get tenant() { return this.call.tenant; }
  get issuer() { return this.call.issuer; }
  get subject() { return this.call.subject; }
  get clientId() { return this.call.clientId; }
  get scopes() { return [...this.call.scopes]; }
  get requestId() { return this.call.requestId; }
  /** What the client can answer: `{ sampling, elicitation, roots }`. */
  get client() { return { ...this.call.client }; }

  hasScope(scope) {
    return this.call.scopes.includes(scope);
  }

  /** An operator-selected claim, parsed, or undefined. */
  claim(name) {
    const found = this.call.claims.find(([k]) => k === name);
    return found ? JSON.parse(found[1]) : undefined;
  }

  /** An operator-supplied configuration value, or `fallback`. */
  config(key, fallback) {
    const found = this.call.config.find(([k]) => k === key);
    return found ? found[1] : fallback;
  }

  progress(progress, total, message) {
    host().progress(progress, total, message);
  }

  /** Your state from the previous input round (verified by the gateway). */
  get state() {
    return this.continuation.state;
  }

  /** State to get back with the client's answers. */
  keepState(state) {
    this.kept = state;
  }

  /** The client's answer to request `key`, parsed, or undefined. */
  answer(key) {
    const text = this.continuation.responses[key];
    return text === undefined ? undefined : JSON.parse(text);
  }

  /**
   * Ask the user to fill in a form (`fields`: an `s.object` of flat properties). Returns the
   * answers or null when declined; the first time it throws NeedInput (let it propagate).
   */
  elicit(key, message, fields) {
    const answer = this.answer(key);
    if (answer === undefined) {
      throw new NeedInput(key, { elicit: { message, requestedSchema: JSON.stringify(fields) } }, this.kept);
    }
    return answer.action === "accept" ? answer.content : null;
  }

  /** Ask the client's model (`sampling/createMessage` params); returns its result. */
  sample(key, params) {
    const answer = this.answer(key);
    if (answer === undefined) throw new NeedInput(key, { sample: JSON.stringify(params) }, this.kept);
    return answer;
  }

  /** The client's roots (`roots/list`): `[{ uri, name? }]`; the first time it throws NeedInput (let it propagate). */
  roots(key = "roots") {
    const answer = this.answer(key);
    if (answer === undefined) throw new NeedInput(key, { roots: true }, this.kept);
    return [...(answer.roots || [])];
  }
}

const NAME = /^[A-Za-z0-9_.-]{1,128}$/;

function named(kind, name) {
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new TypeError(`${kind} name ${JSON.stringify(name)} must match [A-Za-z0-9_.-]{1,128}`);
  }
  return name;
}

/** `{var}` templates (RFC 6570 level 1): the variables of `uri`, or null when it does not match. */
export function matchTemplate(template, uri) {
  const names = [];
  const source = template
    .split(/(\{[^}]+\})/)
    .map((part) => {
      if (part.startsWith("{") && part.endsWith("}")) {
        names.push(part.slice(1, -1));
        return "([^/]+)";
      }
      return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("");
  const m = new RegExp(`^${source}$`).exec(uri);
  if (!m) return null;
  return Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
}

/**
 * What a plugin offers. Register with `tool`, `resource`, `resourceTemplate` and `prompt`,
 * then `export const { tools, resources, prompts, completion, tasks, approvals } = plugin.exports();`.
 */
export class Plugin {
  constructor() {
    this.tools = new Map();
    this.resources = new Map();
    this.templates = [];
    this.prompts = new Map();
  }

  /**
   * Register a tool. `def`: `{ name, description, title, input (an s.object), output (a
   * schema: structured results), scopes, readOnly, destructive, idempotent, openWorld, task }`;
   * `run(ctx, args)` returns a string, an Output, or a value (JSON; structured when `output`
   * is declared). Arguments are checked against `input` before `run` is called. `task`:
   * `"optional"` or `"required"` (or `{ support, input: "in-task" | "before-task" }`) makes
   * it a tool that may run as an MCP Task. `approval`: `{ type, bind, singleUse, maxAgeSecs }`
   * makes each call need a person's approval (RFC 9396 `authorization_details` of `type`
   * binding the `bind` arguments' values, or the digest of all arguments when `bind` is
   * empty; single use and 300 s by default): the gateway refuses a caller whose token does
   * not carry it, and `run` sees what was approved in `ctx.claim("authorization_details")`.
   */
  tool(def, run) {
    const name = named("tool", def.name);
    if (this.tools.has(name)) throw new TypeError(`tool \`${name}\` is registered twice`);
    const input = def.input || s.object({});
    if (input.json.type !== "object") throw new TypeError(`tool \`${name}\`: input must be an s.object`);
    synchronous("tool", name, run);
    const approval = approvalRule(name, def.approval, input.json);
    this.tools.set(name, { ...def, name, input, run, task: taskMode(name, def.task), approval });
    return this;
  }

  /** `[{ name, support, input }]` of the tools that may run as tasks. */
  taskTools() {
    return [...this.tools.values()].filter((t) => t.task).map((t) => ({ name: t.name, ...t.task }));
  }

  /** `[{ tool, detailType, bind, singleUse, maxAgeSecs }]` of the tools a person must approve call by call. */
  approvalRules() {
    return [...this.tools.values()].filter((t) => t.approval).map((t) => ({ tool: t.name, ...t.approval }));
  }

  /** Register the resource at `def.uri` (`{ uri, name, description, mimeType, scopes }`); `read(ctx)` returns a string or bytes. */
  resource(def, read) {
    synchronous("resource", def.uri, read);
    this.resources.set(def.uri, { ...def, read });
    return this;
  }

  /**
   * Register a resource template (`{ uriTemplate: "notes://{id}", name, ... , complete: {
   * id: (ctx, prefix) => [...] } }`); `read(ctx, vars, uri)` returns a string or bytes.
   */
  resourceTemplate(def, read) {
    synchronous("resource template", def.uriTemplate, read);
    this.templates.push({ ...def, read });
    return this;
  }

  /**
   * Register a prompt (`{ name, description, arguments: [{ name, description, required,
   * complete(ctx, prefix) }], scopes }`); `get(ctx, args)` returns a string (one user
   * message) or a list of [role, text or content block].
   */
  prompt(def, get) {
    const name = named("prompt", def.name);
    synchronous("prompt", name, get);
    this.prompts.set(name, { arguments: [], ...def, name, get });
    return this;
  }

  // The calls, in plain values (component.js converts them to and from WIT shapes).

  /** Run tool `name`: {done: result} | {input: NeedInput} | {unknown} | {invalid: message} | {failed: message}. */
  callTool(call, name, argumentsText, continuation) {
    const tool = this.tools.get(name);
    if (!tool) return { unknown: true };
    let args;
    try {
      args = JSON.parse(argumentsText);
    } catch (e) {
      return { invalid: `the arguments are not JSON: ${e.message}` };
    }
    const problems = tool.input.check(args);
    if (problems.length) return { invalid: problems.join("; ") };
    return outcome(() => result(tool.run(new Context(call, continuation), args), tool.output !== undefined));
  }

  readResource(call, uri, continuation) {
    const fixed = this.resources.get(uri);
    let read;
    let mimeType;
    if (fixed) {
      read = (ctx) => fixed.read(ctx, {}, uri);
      mimeType = fixed.mimeType;
    } else {
      for (const t of this.templates) {
        const vars = matchTemplate(t.uriTemplate, uri);
        if (vars) {
          read = (ctx) => t.read(ctx, vars, uri);
          mimeType = t.mimeType;
          break;
        }
      }
    }
    if (!read) return { notFound: true };
    return outcome(() => ({ body: read(new Context(call, continuation)), mimeType }));
  }

  getPrompt(call, name, args, continuation) {
    const prompt = this.prompts.get(name);
    if (!prompt) return { unknown: true };
    const given = Object.fromEntries(args);
    const missing = prompt.arguments.filter((a) => a.required && !(a.name in given)).map((a) => a.name);
    if (missing.length) return { invalid: `missing required argument(s): ${missing.join(", ")}` };
    return outcome(() => {
      const messages = prompt.get(new Context(call, continuation), given);
      return typeof messages === "string" ? [["user", messages]] : messages;
    });
  }

  /** Completions for argument `argName` of a prompt or a resource template. */
  complete(call, reference, argName, prefix) {
    let completer;
    if (reference.prompt !== undefined) {
      const arg = this.prompts.get(reference.prompt)?.arguments.find((a) => a.name === argName);
      completer = arg?.complete;
    } else {
      const t = this.templates.find((x) => x.uriTemplate === reference.resourceTemplate);
      completer = t?.complete?.[argName];
    }
    const values = completer ? completer(new Context(call), prefix) : [];
    return values.slice(0, 100);
  }

  /**
   * The exports componentize-js looks for (`tools`, `resources`, `prompts`, `completion`,
   * `tasks`, `approvals`); outside a component (native tests) an empty object.
   */
  exports() {
    return exportsOf(this);
  }
}

/**
 * A tool's approval rule, checked as the gateway checks it when it loads the plugin: a type of
 * `[A-Za-z0-9_.:/-]{1,128}`, at most 32 distinct bound arguments the input schema names, an
 * age of 1 s to a day.
 */
function approvalRule(name, approval, input) {
  if (approval === undefined || approval === null) return undefined;
  const { type, bind = [], singleUse = true, maxAgeSecs = 300, ...rest } = approval;
  const wrong = (why) => new TypeError(`tool \`${name}\`: approval: ${why}`);
  const unknown = Object.keys(rest);
  if (unknown.length) throw wrong(`unknown field \`${unknown[0]}\` (type, bind, singleUse, maxAgeSecs)`);
  if (typeof type !== "string" || !/^[A-Za-z0-9_.:\/-]{1,128}$/.test(type)) {
    throw wrong("type must match [A-Za-z0-9_.:/-]{1,128}");
  }
  if (!Array.isArray(bind) || bind.length > 32) throw wrong("bind must be a list of at most 32 argument names");
  bind.forEach((b, i) => {
    if (bind.indexOf(b) !== i) throw wrong(`binds \`${b}\` twice`);
    if (!Object.hasOwn(input.properties || {}, b)) throw wrong(`binds \`${b}\`, which the tool's input does not name`);
  });
  if (typeof singleUse !== "boolean") throw wrong("singleUse must be a boolean");
  if (!Number.isInteger(maxAgeSecs) || maxAgeSecs < 1 || maxAgeSecs > 86400) {
    throw wrong("maxAgeSecs must be 1 to 86400 seconds");
  }
  return { detailType: type, bind: [...bind], singleUse, maxAgeSecs };
}

const TASK_SUPPORT = ["optional", "required"];
const TASK_INPUT = ["in-task", "before-task"];

function taskMode(name, task) {
  if (task === undefined || task === null || task === false) return undefined;
  const mode = typeof task === "string" ? { support: task, input: "in-task" } : { input: "in-task", ...task };
  if (!TASK_SUPPORT.includes(mode.support)) throw new TypeError(`tool \`${name}\`: task must be one of ${TASK_SUPPORT.join(", ")}`);
  if (!TASK_INPUT.includes(mode.input)) throw new TypeError(`tool \`${name}\`: task input must be one of ${TASK_INPUT.join(", ")}`);
  return { support: mode.support, input: mode.input };
}

/** Refuse an `async` function at registration: calls run to their end in one pass (host calls such as fetch block), with no event loop to settle a promise. */
function synchronous(kind, name, fn) {
  if (typeof fn !== "function") throw new TypeError(`${kind} \`${name}\`: its handler must be a function`);
  if (fn.constructor && fn.constructor.name === "AsyncFunction") {
    throw new TypeError(`${kind} \`${name}\` is \`async\`: plugin functions run synchronously (host calls such as fetch block until they answer); drop \`async\` and \`await\``);
  }
}

function outcome(run) {
  try {
    return { done: run() };
  } catch (e) {
    if (e instanceof NeedInput) return { input: e };
    if (e instanceof NotFound) return { notFound: true };
    if (e instanceof InvalidArguments) return { invalid: e.message };
    if (e instanceof ToolError || e instanceof DownstreamError) return { failed: e.message };
    return { failed: `the plugin failed: ${e && e.message ? e.message : String(e)}` };
  }
}

/** A tool's return value as { content, structured, isError }. */
function result(value, declaredOutput) {
  if (value && typeof value.then === "function") {
    // Host calls (fetch, log) block; the component has no event loop to settle a promise.
    throw new ToolError("the tool returned a Promise: tool functions must be synchronous (drop `async`)");
  }
  if (value instanceof Output) return { content: value.content, structured: value.structured, isError: value.isError };
  if (typeof value === "string") return { content: [{ type: "text", text: value }], structured: undefined, isError: false };
  const text = JSON.stringify(value ?? null);
  const structured = declaredOutput || (value && typeof value === "object" && !Array.isArray(value)) ? value : undefined;
  return { content: [{ type: "text", text }], structured, isError: false };
}
