// The official TypeScript SDK client calling one tool with a bearer token it was handed (a
// user's token from an identity provider the SDK's OAuth flow cannot drive, such as Entra ID
// with a pre-registered client). Prints {"status": "ok", "result": ...} or
// {"status": "error", "code": ..., "message": ...}.
//
// CAPS (JSON) is what the client declares (e.g. {"elicitation": {"url": {}}}); an error is
// printed with its code and data (a URL elicitation's -32042 carries the elicitations).
//
// usage: node bearer-call.mjs <mcp url> <token> <tool> <arguments json>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, token, tool, args] = process.argv.slice(2);
const client = new Client({ name: 'portcullis-bearer', version: '1.0.0' }, { capabilities: JSON.parse(process.env.CAPS ?? '{}') });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
try {
  await client.connect(transport);
  const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
  console.log(JSON.stringify({ status: 'ok', result }));
} catch (e) {
  console.log(JSON.stringify({ status: 'error', code: e.code ?? null, message: String(e.message ?? e), data: e.data ?? null, protocol: transport.protocolVersion ?? null }));
} finally {
  await client.close().catch(() => {});
}
