// `js-words`: a Portcullis plugin in JavaScript, written with portcullis-sdk: tools with
// constrained arguments and structured results, a task tool with rich content, a resource
// template and a prompt with completion.
//
// Build: `npx portcullis-plugin build app.js -o js_words.wasm` (`cargo xtask build-plugins`
// does it, into `target/plugins/js-words.wasm`). Test: `node --test test/`.

import { NotFound, Output, Plugin, fetch, log, notifyResourceUpdated, s } from "portcullis-sdk";

export const plugin = new Plugin();

plugin.tool(
  {
    name: "jswords.count",
    title: "Count words",
    description: "Count the words in a text (words shorter than minLength are skipped).",
    scopes: ["words:read"],
    readOnly: true,
    input: s.object({
      text: s.string("The text to count"),
      minLength: s.optional(s.integer({ minimum: 1, description: "The shortest word to count" })),
    }),
    output: s.object({ words: s.integer(), longest: s.string() }),
  },
  (ctx, { text, minLength = 1 }) => {
    const words = text.split(/\s+/).filter((w) => w.length >= minLength);
    log(`counted ${words.length} words for ${ctx.subject}`, { logger: "js-words" });
    return { words: words.length, longest: words.reduce((a, w) => (w.length > a.length ? w : a), "") };
  },
);

plugin.tool(
  {
    name: "jswords.fetch",
    title: "Count a document's words",
    description: "Fetch a document from the `docs` service and count its words.",
    scopes: ["words:read"],
    openWorld: true,
    input: s.object({ path: s.string("The document's path on the docs service") }),
  },
  (ctx, { path }) => {
    const response = fetch("docs", path).ok();
    return `${response.text().split(/\s+/).filter(Boolean).length} words`;
  },
);

plugin.tool(
  {
    name: "jswords.web",
    description: "Calls the engine's own fetch(), which needs wasi:http: the gateway does not provide it.",
    input: s.object({ url: s.string() }),
  },
  (ctx, { url }) => {
    globalThis.fetch(url);
    return "unreachable";
  },
);

plugin.tool(
  {
    name: "jswords.report",
    title: "Report on a document",
    description: "Count a document's words slowly (may run as an MCP Task); links the document.",
    scopes: ["words:read"],
    task: "optional",
    input: s.object({ path: s.string("The document's path on the docs service") }),
  },
  (ctx, { path }) => {
    const text = fetch("docs", path).ok().text();
    ctx.progress(1, 2, "fetched");
    const name = path.replace(/^\/+/, "");
    notifyResourceUpdated(`words://${name}`);
    return new Output({
      text: `${text.split(/\s+/).filter(Boolean).length} words`,
      content: [{ type: "resource_link", uri: `words://${name}`, name: path }],
    });
  },
);

plugin.tool(
  { name: "jswords.roots", title: "Where the client works", description: "The client's roots (the gateway asks the client, then calls again with the answer)." },
  (ctx) => ctx.roots().map((r) => r.uri).join(", ") || "no roots",
);

plugin.resourceTemplate(
  { uriTemplate: "words://{name}", name: "document", title: "A document's words", mimeType: "text/plain", scopes: ["words:read"] },
  (ctx, { name }) => {
    const response = fetch("docs", `/${name}`);
    if (response.status === 404) throw new NotFound();
    return response.ok().text().split(/\s+/).filter(Boolean).join("\n");
  },
);

plugin.prompt(
  {
    name: "jswords.summarise",
    title: "Summarise a text",
    description: "Ask the model for a summary.",
    arguments: [
      { name: "text", description: "The text to summarise", required: true },
      { name: "style", description: "brief or bullets", complete: (ctx, prefix) => ["brief", "bullets"].filter((s) => s.startsWith(prefix)) },
    ],
  },
  (ctx, { text, style = "brief" }) => `Summarise this (${style}):\n${text}`,
);

export const { tools, resources, prompts, completion, tasks } = plugin.exports();
