// The SDK's own tests, natively: `node --test test/` in sdk/js.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { NeedInput, Output, Plugin, matchTemplate, s } from "../index.js";
import { TestHost } from "../testing.js";

test("schemas are JSON Schema and check the same rules", () => {
  const schema = s.object({
    name: s.string({ description: "who", minLength: 1, pattern: "^[a-z]+$" }),
    tags: s.optional(s.array(s.oneOf(["a", "b"]), { maxItems: 2 })),
    n: s.optional(s.integer({ minimum: 0 })),
  });
  assert.deepEqual(JSON.parse(JSON.stringify(schema)), {
    type: "object",
    properties: {
      name: { type: "string", description: "who", minLength: 1, pattern: "^[a-z]+$" },
      tags: { type: "array", items: { type: "string", enum: ["a", "b"] }, maxItems: 2 },
      n: { type: "integer", minimum: 0 },
    },
    required: ["name"],
    additionalProperties: false,
  });
  assert.deepEqual(schema.check({ name: "ada" }), []);
  assert.deepEqual(schema.check({ name: "Ada", tags: ["c", "a", "b"], n: 1.5, x: 1 }), [
    "$.name: does not match ^[a-z]+$",
    "$.tags: more than 2 items",
    '$.tags[0]: expected one of "a", "b"',
    "$.n: expected an integer, got number",
    "$: unexpected property `x`",
  ]);
  assert.deepEqual(schema.check([]), ["$: expected an object, got array"]);
});

test("string formats are checked as the gateway does", () => {
  // The table the gateway's own unit test decides the same way.
  const { cases } = JSON.parse(readFileSync(new URL("../../format-cases.json", import.meta.url), "utf8"));
  for (const [format, text, valid] of cases) {
    assert.equal(s.string({ format }).check(text).length === 0, valid, `${format} ${text}`);
  }
  assert.deepEqual(s.string({ format: "date" }).check("2026-13-01"), ['$: "2026-13-01" is not a valid date']);
});

test("results: strings, values, Outputs and thrown errors", () => {
  const plugin = new Plugin()
    .tool({ name: "t.text" }, () => "hi")
    .tool({ name: "t.value" }, () => ({ a: 1 }))
    .tool({ name: "t.list" }, () => [1, 2])
    .tool({ name: "t.output" }, () => Output.error("nope"))
    .tool({ name: "t.throws" }, () => {
      throw new RangeError("boom");
    })
    // A function returning a promise without being `async` is caught when it returns.
    .tool({ name: "t.promise" }, () => Promise.resolve("later"));
  const host = new TestHost();
  assert.equal(host.callTool(plugin, "t.text").text, "hi");
  assert.deepEqual(host.callTool(plugin, "t.value").structured, { a: 1 });
  assert.equal(host.callTool(plugin, "t.list").structured, undefined);
  assert.equal(host.callTool(plugin, "t.output").isError, true);
  assert.throws(() => host.callTool(plugin, "t.throws"), /the plugin failed: boom/);
  assert.throws(() => host.callTool(plugin, "t.none"), /unknown tool `t.none`/);
  assert.throws(() => host.callTool(plugin, "t.promise"), /must be synchronous/);
  assert.throws(() => new Plugin().tool({ name: "t.async" }, async () => "later"), /drop `async` and `await`/);
  assert.throws(() => new Plugin().tool({ name: "bad name" }, () => ""), /must match/);
});

test("elicitation round trip keeps state", () => {
  const plugin = new Plugin().tool({ name: "t.ask" }, (ctx) => {
    ctx.keepState("round-1");
    const answer = ctx.elicit("who", "Your name?", s.object({ name: s.string() }));
    return answer ? `hello ${answer.name} (${ctx.state})` : "declined";
  });
  const host = new TestHost({ client: { elicitation: true } });
  let need;
  assert.throws(() => host.callTool(plugin, "t.ask"), (e) => (need = e) instanceof NeedInput);
  assert.equal(JSON.parse(need.request.elicit.requestedSchema).required[0], "name");
  host.answer(need, { action: "accept", content: { name: "ada" } });
  assert.equal(host.callTool(plugin, "t.ask").text, "hello ada (round-1)");
});

test("resources, templates and prompts", () => {
  const plugin = new Plugin()
    .resource({ uri: "x://fixed", name: "fixed" }, () => "fixed body")
    .resourceTemplate({ uriTemplate: "notes://{id}", name: "note" }, (ctx, { id }) => `note ${id}`)
    .prompt({ name: "p", arguments: [{ name: "topic", required: true }] }, (ctx, { topic }) => `about ${topic}`);
  const host = new TestHost();
  assert.equal(host.readResource(plugin, "x://fixed").body, "fixed body");
  assert.equal(host.readResource(plugin, "notes://a%20b").body, "note a b");
  assert.throws(() => host.readResource(plugin, "notes://a/b"), /unknown resource/);
  assert.deepEqual(host.getPrompt(plugin, "p", { topic: "wasm" }), [["user", "about wasm"]]);
  assert.throws(() => host.getPrompt(plugin, "p"), /missing required argument\(s\): topic/);
  assert.deepEqual(matchTemplate("a://{x}/{y}", "a://1/2"), { x: "1", y: "2" });
});

test("a host import outside a test host is a clear error", async () => {
  const { fetch } = await import("../index.js");
  assert.throws(() => fetch("docs", "/"), /outside a gateway: in tests, call the plugin through TestHost/);
});

test("parity: tasks, roots, not-found, notifications, rich prompts, harness output checks and MCP in-process", async () => {
  const { McpTestClient, OutputMismatch } = await import("../testing.js");
  const { NotFound, notifyResourceUpdated } = await import("../index.js");
  const plugin = new Plugin()
    .tool({ name: "t.report", task: "optional", input: s.object({ n: s.integer({ minimum: 1, maximum: 9 }) }) }, (ctx, { n }) => {
      ctx.progress(1, 1, "done");
      notifyResourceUpdated("x://1");
      return `report ${n}`;
    })
    .tool({ name: "t.shaped", output: s.object({ n: s.integer() }) }, (ctx) => ({ n: 1, extra: true }))
    .tool({ name: "t.where" }, (ctx) => ctx.roots().map((r) => r.uri).join(","))
    .resourceTemplate({ uriTemplate: "x://{id}", name: "x" }, (ctx, { id }) => {
      if (id !== "1") throw new NotFound();
      return "one";
    })
    .prompt({ name: "p", arguments: [{ name: "a", description: "what" }] }, () => [["user", { type: "image", data: new Uint8Array([1]), mimeType: "image/png" }]]);
  assert.deepEqual(plugin.taskTools(), [{ name: "t.report", support: "optional", input: "in-task" }]);
  const host = new TestHost({ client: { roots: true } });
  assert.equal(host.callTool(plugin, "t.report", { n: 2 }).text, "report 2");
  assert.deepEqual(host.notifications, [{ resourceUpdated: "x://1" }]);
  assert.throws(() => host.callTool(plugin, "t.report", { n: 10 }), /Invalid arguments for tool `t.report`: \$.n/);
  assert.throws(() => host.callTool(plugin, "t.shaped"), (e) => e instanceof OutputMismatch && /extra/.test(e.message));
  const client = new McpTestClient(plugin, host);
  const tools = client.request("tools/list").result.tools;
  assert.deepEqual(tools.find((t) => t.name === "t.report")._meta["io.modelcontextprotocol/tasks"], { taskSupport: "optional" });
  assert.equal(client.request("resources/read", { uri: "x://2" }).error.code, -32002);
  assert.equal(client.request("resources/read", { uri: "x://1" }).result.contents[0].text, "one");
  const asked = client.request("tools/call", { name: "t.where" }).result;
  assert.equal(asked.inputRequests.roots.method, "roots/list");
  const done = client.request("tools/call", { name: "t.where", inputResponses: { roots: { roots: [{ uri: "file:///a" }] } }, requestState: asked.requestState });
  assert.equal(done.result.content[0].text, "file:///a");
  assert.equal(client.request("prompts/get", { name: "p" }).result.messages[0].content.type, "image");
  assert.equal(client.request("tools/call", { name: "nope" }).error.code, -32602);
  assert.equal(client.request("tools/call", { name: "t.shaped" }).result.isError, true);
});

test("approvals are declared and checked as the gateway checks them", () => {
  const input = s.object({ amount: s.string(), account: s.string(), memo: s.optional(s.string()) });
  const plugin = new Plugin()
    .tool({ name: "pay.refund", input, approval: { type: "payment_refund", bind: ["amount", "account"] } }, (ctx, a) =>
      `${a.amount} ${a.account} ${ctx.claim("authorization_details").type}`)
    .tool({ name: "pay.payout", approval: { type: "payment_initiation", singleUse: false, maxAgeSecs: 600 } }, () => "ok");
  assert.deepEqual(plugin.approvalRules(), [
    { tool: "pay.refund", detailType: "payment_refund", bind: ["amount", "account"], singleUse: true, maxAgeSecs: 300 },
    { tool: "pay.payout", detailType: "payment_initiation", bind: [], singleUse: false, maxAgeSecs: 600 },
  ]);
  const host = new TestHost({ claims: { authorization_details: { type: "payment_refund" } } });
  assert.equal(host.callTool(plugin, "pay.refund", { amount: "1.00", account: "DE02" }).text, "1.00 DE02 payment_refund");
  for (const [approval, problem] of [
    [{ type: "a b" }, /type must match/],
    [{ type: "t", bind: ["amount", "amount"] }, /binds `amount` twice/],
    [{ type: "t", bind: ["iban"] }, /binds `iban`, which the tool's input does not name/],
    [{ type: "t", maxAgeSecs: 0 }, /maxAgeSecs must be 1 to 86400/],
    [{ type: "t", maxAgeSecs: 86401 }, /maxAgeSecs must be 1 to 86400/],
    [{ type: "t", bind: Array.from({ length: 33 }, (_, i) => `a${i}`) }, /at most 32/],
    [{ type: "t", single_use: false }, /unknown field `single_use`/],
  ]) {
    assert.throws(() => new Plugin().tool({ name: "pay.bad", input, approval }, () => ""), problem);
  }
});
