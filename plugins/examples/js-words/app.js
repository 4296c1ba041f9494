// `js-words`: a Portcullis plugin in JavaScript, written with portcullis-sdk: tools with
// constrained arguments and structured results, a task tool with rich content, the client's
// roots, a tool asking the client's model and then the user (sampling, then elicitation), a
// tool that changes the resource list and embeds what it wrote, an image as a tool result and
// as a fixed resource, a resource template and a prompt with completion (the same plugin as
// `rs-words` and `py-words`).
//
// Build: `npx portcullis-plugin build app.js -o js_words.wasm` (`cargo xtask build-plugins`
// does it, into `target/plugins/js-words.wasm`). Test: `node --test test/`.

import { NotFound, Output, Plugin, ToolError, fetch, log, notifyListsChanged, notifyResourceUpdated, s } from "portcullis-sdk";

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

plugin.tool(
  {
    name: "jswords.headline",
    title: "Find a headline",
    description: "The client's model drafts a headline for a text; the user approves or edits it.",
    input: s.object({ text: s.string("The text to find a headline for") }),
  },
  (ctx, { text }) => {
    if (!(ctx.client.sampling && ctx.client.elicitation)) {
      return Output.error("jswords.headline needs a client that can sample and elicit");
    }
    // Two input rounds; each runs the tool again with that round's answers only, so the draft
    // travels in the plugin's state (integrity-protected by the gateway).
    let draft = ctx.state;
    if (draft === undefined || draft === null) {
      const sampled = ctx.sample("draft", {
        messages: [{ role: "user", content: { type: "text", text: `One headline for this text:\n${text}` } }],
        maxTokens: 40,
      });
      draft = sampled.content.text;
    }
    ctx.keepState(draft);
    const approved = ctx.elicit("approve", `Use this headline? ${draft}`, s.object({ headline: s.string() }));
    return approved ? approved.headline : "no headline (declined)";
  },
);

plugin.tool(
  {
    name: "jswords.publish",
    title: "Publish a document",
    description: "Write a document to the docs service; it is then a `words://` resource.",
    scopes: ["words:write"],
    destructive: false,
    openWorld: true,
    input: s.object({
      name: s.string({ pattern: "^[a-z0-9-]{1,40}$", description: "The document's name (its resource is words://NAME)" }),
      text: s.string("Its text"),
    }),
  },
  (ctx, { name, text }) => {
    const response = fetch("docs", `/${name}`, { method: "PUT", body: text, headers: [["content-type", "text/plain"]] });
    if (response.status < 200 || response.status >= 300) throw new ToolError(`the docs service answered HTTP ${response.status}`);
    notifyListsChanged({ resources: true });
    return new Output({
      text: `published words://${name}`,
      content: [{ type: "resource", uri: `words://${name}`, mimeType: "text/plain", text }],
    });
  },
);

// The plugin's logo: a 1x1 PNG, as MCP writes bytes (base64 text; a Uint8Array works too).
const LOGO = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const LOGO_BYTES = new Uint8Array([
  0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01,
  0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41,
  0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f, 0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00,
  0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
]);

plugin.tool(
  { name: "jswords.logo", title: "The logo", description: "The plugin's logo, as an image.", readOnly: true },
  () => new Output({ content: [{ type: "image", data: LOGO, mimeType: "image/png" }] }),
);

plugin.resource({ uri: "logo://jswords", name: "logo", title: "The logo", mimeType: "image/png" }, () => LOGO_BYTES);

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

export const { tools, resources, prompts, completion, tasks, approvals } = plugin.exports();
