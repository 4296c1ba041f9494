// The plugin's own tests, natively (no gateway): `node --test test/`.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DownstreamError, InvalidArguments, Response, ToolError } from "portcullis-sdk";
import { TestHost } from "portcullis-sdk/testing";

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
