// Drives `portcullis stdio` with the official TypeScript SDK client (StdioClientTransport):
// initialize, list tools, call tools. Prints one JSON object with what it saw.
//
// usage: node stdio-client.mjs <portcullis binary> <config file>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const [binary, config] = process.argv.slice(2);
const transport = new StdioClientTransport({
  command: binary,
  args: ['stdio', '--config', config],
  env: { ...process.env },
  stderr: 'inherit',
});
const client = new Client({ name: 'portcullis-stdio-test', version: '1.0.0' });
await client.connect(transport);
const tools = await client.listTools();
const greet = await client.callTool({ name: 'hello.greet', arguments: { name: 'stdio' } });
const who = await client.callTool({ name: 'hello.whoami', arguments: {} });
let unknown;
try {
  await client.callTool({ name: 'no.such.tool', arguments: {} });
  unknown = { error: null };
} catch (e) {
  unknown = { error: String(e.message ?? e), code: e.code };
}
console.log(JSON.stringify({
  server: client.getServerVersion(),
  protocol: transport.protocolVersion ?? null,
  tools: tools.tools.map((t) => t.name),
  greet,
  who,
  unknown,
}));
await client.close();
