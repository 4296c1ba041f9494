// The plugin's own tests, natively (no gateway): `node --test test/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DownstreamError, InvalidArguments, Response, ToolError } from "portcullis-sdk";
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

test("over MCP, in-process, as the gateway serves it", () => {
  const docs = { "GET /a": () => new Response(200, "x yy zzz"), "GET /gone": () => new Response(404, "") };
  const host = new TestHost({ downstream: { docs } });
  const client = new McpTestClient(plugin, host);
  const tools = Object.fromEntries(client.request("tools/list").result.tools.map((t) => [t.name, t]));
  assert.deepEqual(tools["jswords.report"]._meta["io.modelcontextprotocol/tasks"], { taskSupport: "optional" });
  const report = client.request("tools/call", { name: "jswords.report", arguments: { path: "/a" } }).result;
  assert.deepEqual(report.content.map((c) => c.type), ["text", "resource_link"]);
  assert.deepEqual(host.notifications, [{ resourceUpdated: "words://a" }]);
  assert.equal(client.request("resources/read", { uri: "words://a" }).result.contents[0].text, "x\nyy\nzzz");
  assert.equal(client.request("resources/read", { uri: "words://gone" }).error.code, -32002);
  const got = client.request("prompts/get", { name: "jswords.summarise", arguments: { text: "t" } }).result;
  assert.equal(got.messages[0].content.text, "Summarise this (brief):\nt");
  const done = client.request("completion/complete", { ref: { type: "ref/prompt", name: "jswords.summarise" }, argument: { name: "style", value: "bu" } });
  assert.deepEqual(done.result.completion.values, ["bullets"]);
  const bad = client.request("tools/call", { name: "jswords.count", arguments: { text: "a", minLength: 0 } }).result;
  assert.equal(bad.isError, true);
});
