// The plugin's own tests, natively (no gateway): `node --test test/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DownstreamError, InvalidArguments, NeedInput, Response, ToolError } from "portcullis-sdk";
import { McpTestClient, OutputMismatch, TestHost } from "portcullis-sdk/testing";

import { plugin } from "../app.js";

test("counts and logs", () => {
  const host = new TestHost({ subject: "ada" });
  const r = host.callTool(plugin, "jswords.count", { text: "a bb ccc", minLength: 2 });
  assert.deepEqual(r.structured, { words: 2, longest: "ccc" });
  assert.deepEqual(host.logs, [{ level: "info", logger: "js-words", message: "counted 2 words for ada" }]);
});

test("the schema is declared once and checked before the tool runs", () => {
  const input = JSON.parse(JSON.stringify(plugin.tools.get("jswords.count").input));
  assert.deepEqual(input.required, ["text"]);
  assert.equal(input.additionalProperties, false);
  const host = new TestHost();
  assert.throws(() => host.callTool(plugin, "jswords.count", { text: 3 }), InvalidArguments);
  assert.throws(() => host.callTool(plugin, "jswords.count", { text: "a", extra: 1 }), /unexpected property `extra`/);
  assert.throws(() => host.callTool(plugin, "jswords.count", {}), /missing required property `text`/);
  assert.equal(host.logs.length, 0);
});

test("fetch uses the docs service and reports failures", () => {
  const host = new TestHost({ downstream: { docs: () => new Response(200, "one two three") } });
  assert.equal(host.callTool(plugin, "jswords.fetch", { path: "/a" }).text, "3 words");
  assert.equal(host.requests[0].service, "docs");
  assert.equal(host.requests[0].path, "/a");
  const down = new TestHost({
    downstream: {
      docs: () => {
        throw new DownstreamError("timeout");
      },
    },
  });
  assert.throws(() => down.callTool(plugin, "jswords.fetch", { path: "/a" }), ToolError);
  const missing = new TestHost({ downstream: { docs: () => new Response(404, "no such document") } });
  assert.throws(() => missing.callTool(plugin, "jswords.fetch", { path: "/b" }), /HTTP 404: no such document/);
});

test("a result breaking the output schema is caught, as the gateway would", () => {
  const tool = plugin.tools.get("jswords.count");
  const run = tool.run;
  tool.run = (ctx, args) => ({ ...run(ctx, args), extra: 1 });
  try {
    assert.throws(() => new TestHost().callTool(plugin, "jswords.count", { text: "a" }), OutputMismatch);
  } finally {
    tool.run = run;
  }
});

test("the headline: the model drafts, then the user approves", () => {
  const host = new TestHost();
  const text = { text: "the gateway checks every call" };
  const asked = (run) => {
    try {
      run();
    } catch (e) {
      if (e instanceof NeedInput) return e;
      throw e;
    }
    assert.fail("expected an input request");
  };
  const first = asked(() => host.callTool(plugin, "jswords.headline", text));
  assert.equal(first.key, "draft");
  assert.ok(first.request.sample);
  host.answer(first, { role: "assistant", model: "m", content: { type: "text", text: "Every call checked" } });
  const second = asked(() => host.callTool(plugin, "jswords.headline", text));
  assert.deepEqual([second.key, second.state], ["approve", "Every call checked"]);
  host.answer(second, { action: "accept", content: { headline: "Every call, checked" } });
  assert.equal(host.callTool(plugin, "jswords.headline", text).text, "Every call, checked");
  const r = new TestHost({ client: { sampling: false } }).callTool(plugin, "jswords.headline", { text: "t" });
  assert.equal(r.isError, true);
});

test("publishing changes the resource list and embeds the document", () => {
  const host = new TestHost({ downstream: { docs: { "PUT /draft": () => new Response(201, "") } } });
  const r = host.callTool(plugin, "jswords.publish", { name: "draft", text: "a b" });
  assert.equal(r.text, "published words://draft");
  assert.equal(r.content[1].uri, "words://draft");
  assert.deepEqual(host.notifications, [{ listsChanged: ["resources"] }]);
  assert.throws(() => new TestHost().callTool(plugin, "jswords.publish", { name: "../x", text: "a" }), /name/);
});

test("over MCP, in-process, as the gateway serves it", () => {
  const docs = { "GET /a": () => new Response(200, "x yy zzz"), "GET /gone": () => new Response(404, "") };
  const host = new TestHost({ downstream: { docs } });
  const client = new McpTestClient(plugin, host);
  const tools = Object.fromEntries(client.request("tools/list").result.tools.map((t) => [t.name, t]));
  assert.deepEqual(tools["jswords.report"]._meta["io.modelcontextprotocol/tasks"], { taskSupport: "optional" });
  const report = client.request("tools/call", { name: "jswords.report", arguments: { path: "/a" } }).result;
  assert.deepEqual(report.content.map((c) => c.type), ["text", "resource_link"]);
  assert.deepEqual(host.notifications, [{ resourceUpdated: "words://a" }]);
  const logo = client.request("tools/call", { name: "jswords.logo" }).result;
  assert.deepEqual([logo.content[0].type, logo.content[0].mimeType], ["image", "image/png"]);
  assert.deepEqual(client.request("resources/list").result.resources.map((r) => r.uri), ["logo://jswords"]);
  // The tool's base64 text and the resource's bytes are the same image.
  assert.equal(client.request("resources/read", { uri: "logo://jswords" }).result.contents[0].blob, logo.content[0].data);
  assert.equal(client.request("resources/read", { uri: "words://a" }).result.contents[0].text, "x\nyy\nzzz");
  assert.equal(client.request("resources/read", { uri: "words://gone" }).error.code, -32002);
  const got = client.request("prompts/get", { name: "jswords.summarise", arguments: { text: "t" } }).result;
  assert.equal(got.messages[0].content.text, "Summarise this (brief):\nt");
  const done = client.request("completion/complete", { ref: { type: "ref/prompt", name: "jswords.summarise" }, argument: { name: "style", value: "bu" } });
  assert.deepEqual(done.result.completion.values, ["bullets"]);
  const bad = client.request("tools/call", { name: "jswords.count", arguments: { text: "a", minLength: 0 } }).result;
  assert.equal(bad.isError, true);
  // Input over MCP: the roots question comes back as inputRequests; the retry answers it.
  const call = { name: "jswords.roots", arguments: {} };
  const roots = client.request("tools/call", call).result;
  assert.equal(roots.inputRequests.roots.method, "roots/list");
  const answered = client.request("tools/call", { ...call, requestState: roots.requestState, inputResponses: { roots: { roots: [{ uri: "file:///w" }] } } });
  assert.equal(answered.result.content[0].text, "file:///w");
});
