// Test plugin code natively (`node --test`), without a gateway:
//
//   import { TestHost } from "portcullis-sdk/testing";
//   const host = new TestHost({ subject: "ada", scopes: ["words:read"] });
//   const r = host.callTool(plugin, "words.count", { text: "a b" });
//   assert.equal(r.text, "2 words");
//
// Host imports (logs, progress, downstream) are answered by the test host: `host.logs`,
// `host.requests`, and `downstream: { notes: (request) => new Response(200, "...") }` (a stub
// may throw a DownstreamError).

import { DownstreamError, InvalidArguments, ToolError } from "./index.js";
import { install, uninstall } from "./host.js";

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

/** A stand-in for the gateway. */
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
      client: { sampling: false, elicitation: false, roots: false, ...client },
      config: Object.entries(config),
    };
    this.stubs = { ...downstream };
    this.logs = [];
    this.progressReports = [];
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

  fetch(service, request) {
    this.requests.push({ service, ...request });
    const stub = this.stubs[service];
    if (!stub) throw new DownstreamError("unknown-service", `no test stub for service \`${service}\``);
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
   * Call tool `name` with `args` (an object): a Result; throws a ToolError for unknown
   * tools, invalid arguments and failures, and the NeedInput for input requests (answer it
   * and call again).
   */
  callTool(plugin, name, args = {}) {
    const outcome = this.within(() => plugin.callTool(this.call, name, JSON.stringify(args), this.takeContinuation()));
    return settle(outcome, `tool \`${name}\``, (r) => new Result(r));
  }

  /** Read a resource: { body, mimeType }. */
  readResource(plugin, uri) {
    const outcome = this.within(() => plugin.readResource(this.call, uri, this.takeContinuation()));
    return settle(outcome, `resource \`${uri}\``, (r) => r);
  }

  /** Get a prompt: a list of [role, text]. */
  getPrompt(plugin, name, args = {}) {
    const outcome = this.within(() => plugin.getPrompt(this.call, name, Object.entries(args), this.takeContinuation()));
    return settle(outcome, `prompt \`${name}\``, (r) => r);
  }
}

function settle(outcome, what, done) {
  if (outcome.done) return done(outcome.done);
  if (outcome.input) throw outcome.input;
  if (outcome.unknown || outcome.notFound) throw new ToolError(`unknown ${what}`);
  if (outcome.invalid !== undefined) throw new InvalidArguments(outcome.invalid);
  throw new ToolError(outcome.failed);
}
