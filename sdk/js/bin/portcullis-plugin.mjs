#!/usr/bin/env node
// `portcullis-plugin build APP.js -o PLUGIN.wasm`: bundle the app with this SDK (rolldown)
// and make a component of it (componentize-js, world `any-plugin` of the WIT this SDK
// ships). The bundle's entry imports the WIT boundary (component.js) before the app, so the
// app itself never names a `portcullis:` import and stays testable with `node --test`.

import { mkdtemp, rm, writeFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const sdk = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const usage = "usage: portcullis-plugin build APP.js -o PLUGIN.wasm [--no-wasi-http]";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    output: { type: "string", short: "o" },
    "no-wasi-http": { type: "boolean", default: false },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help || positionals[0] !== "build" || positionals.length !== 2 || !values.output) {
  console.error(usage);
  process.exit(values.help ? 0 : 2);
}

const app = resolve(positionals[1]);
const output = resolve(values.output);
const started = Date.now();
const work = await mkdtemp(join(tmpdir(), "portcullis-js-"));
try {
  const entry = join(work, "entry.js");
  await writeFile(
    entry,
    `import ${JSON.stringify(join(sdk, "component.js"))};\n` +
      `import * as app from ${JSON.stringify(app)};\n` +
      `export const { tools, resources, prompts, completion } = app;\n` +
      // An app written before tasks existed exports no `tasks`: it has no task tools.
      `export const tasks = app.tasks ?? { taskTools: () => [] };\n` +
      // Nor one written before approvals existed: none of its tools needs one.
      `export const approvals = app.approvals ?? { approvalRules: () => [] };\n`,
  );
  const { rolldown } = await import("rolldown");
  const bundle = await rolldown({
    input: entry,
    external: [/^portcullis:plugin\//],
    // The app's `portcullis-sdk` is this SDK (one copy of its state in the bundle).
    resolve: { alias: { "portcullis-sdk": join(sdk, "index.js") } },
    logLevel: "warn",
  });
  const bundled = join(work, "plugin.js");
  await bundle.write({ file: bundled, format: "esm" });
  await bundle.close();

  const { componentize } = await import("@bytecodealliance/componentize-js");
  // `fetch-event` would export an HTTP handler the gateway never calls. The engine's
  // `fetch()` imports wasi:http, which the gateway does not provide (calls trap, naming it):
  // use the SDK's `fetch(service, path)`; `--no-wasi-http` leaves those imports out.
  const disableFeatures = ["fetch-event", ...(values["no-wasi-http"] ? ["http"] : [])];
  const { component } = await componentize({
    sourcePath: bundled,
    witPath: join(sdk, "wit", "plugin.wit"),
    worldName: "any-plugin",
    disableFeatures,
  });
  await writeFile(output, component);
  const { size } = await stat(output);
  console.error(`built ${output} (${(size / 1e6).toFixed(1)} MB) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} finally {
  await rm(work, { recursive: true, force: true });
}
