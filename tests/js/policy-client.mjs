// The official TypeScript SDK client (1.x, a 2025-11-25 session) as one caller: it lists the
// tools, then makes each call of CALLS in order. Prints {"tools": [names], "calls": [{"ok":
// bool, "text": ..., "error": ...}]}: a refused call is either an isError result (ok false,
// its text) or a JSON-RPC error (its message).
//
// usage: CALLS='[["tool", {args}], ...]' node policy-client.mjs <mcp url> <token>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, token] = process.argv.slice(2);
const client = new Client({ name: 'portcullis-policy', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
await client.connect(transport);
try {
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const calls = [];
  for (const [name, args] of JSON.parse(process.env.CALLS ?? '[]')) {
    try {
      const r = await client.callTool({ name, arguments: args });
      calls.push({ ok: !r.isError, text: r.content?.[0]?.text ?? null });
    } catch (e) {
      calls.push({ ok: false, error: String(e.message ?? e) });
    }
  }
  console.log(JSON.stringify({ tools, calls }));
} finally {
  await client.close().catch(() => {});
}
