// The official TypeScript SDK client (1.x) exercising what a plugin serves besides tools —
// listing with task markers, a resource template read and a missing resource, a prompt, a
// completion, a tool returning rich content, a tool asking for the client's roots — against one plugin's items named `<prefix>.*`
// and `words://…`. Prints what it saw as JSON.
//
// usage: node features-client.mjs <mcp url> <prefix>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

const [url, prefix] = process.argv.slice(2);
const client = new Client({ name: 'portcullis-features', version: '1.0.0' }, { capabilities: { roots: {} } });
// The client's roots, asked by the plugin through the gateway (roots/list on the session).
client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///work/project', name: 'project' }] }));
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
const failure = async (run) => {
  try {
    await run();
    return null;
  } catch (e) {
    return { code: e.code ?? null, message: String(e.message ?? e) };
  }
};
const tools = (await client.listTools()).tools.filter((t) => t.name.startsWith(`${prefix}.`));
const templates = (await client.listResourceTemplates()).resourceTemplates;
const read = await client.readResource({ uri: 'words://hello' });
const missing = await failure(() => client.readResource({ uri: 'words://no-such-document' }));
const prompts = (await client.listPrompts()).prompts.filter((p) => p.name.startsWith(`${prefix}.`));
const prompt = await client.getPrompt({ name: `${prefix}.summarise`, arguments: { text: 'a text' } });
const completion = await client.complete({ ref: { type: 'ref/prompt', name: `${prefix}.summarise` }, argument: { name: 'style', value: 'bu' } });
const report = await client.callTool({ name: `${prefix}.report`, arguments: { path: '/hello' } });
const roots = await client.callTool({ name: `${prefix}.roots`, arguments: {} });
console.log(JSON.stringify({ tools, templates, read, missing, prompts, prompt, completion: completion.completion, report, roots }));
await client.close();
