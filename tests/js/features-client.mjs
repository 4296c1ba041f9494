// The official TypeScript SDK client (1.x) exercising what a plugin serves besides tools —
// listing with task markers, a resource template read and a missing resource, a prompt, a
// completion, a tool returning rich content, a tool asking for the client's roots, one asking
// the client's model (sampling) and then the user (elicitation), the notifications a plugin
// sends (a subscribed resource updated, the resource list changed), an image as a tool result
// and as a fixed resource — against one plugin's items named `<prefix>.*`, `words://…` and
// `logo://<prefix>`. Prints what it saw as JSON.
//
// usage: node features-client.mjs <mcp url> <prefix>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const [url, prefix] = process.argv.slice(2);
const client = new Client(
  { name: 'portcullis-features', version: '1.0.0' },
  { capabilities: { roots: {}, sampling: {}, elicitation: { form: {} } } },
);
// What the plugin asks through the gateway, as server→client requests on the session: the
// client's roots, its model (the "model" echoes the prompt's last line) and its user (who
// accepts the draft with a comma added).
const asked = [];
client.setRequestHandler(ListRootsRequestSchema, async () => {
  asked.push('roots/list');
  return { roots: [{ uri: 'file:///work/project', name: 'project' }] };
});
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  asked.push('sampling/createMessage');
  const prompt = request.params.messages.at(-1).content.text;
  return { role: 'assistant', model: 'echo', content: { type: 'text', text: `Draft: ${prompt.split('\n').at(-1)}` } };
});
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  asked.push('elicitation/create');
  const draft = request.params.message.replace('Use this headline? ', '');
  return { action: 'accept', content: { headline: `${draft}, approved` } };
});
// What the plugin announced, through the gateway, on this session.
const heard = [];
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => heard.push(`updated ${n.params.uri}`));
client.setNotificationHandler(ResourceListChangedNotificationSchema, () => heard.push('resources/list_changed'));
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
await client.subscribeResource({ uri: 'words://hello' });
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
const headline = await client.callTool({ name: `${prefix}.headline`, arguments: { text: 'the gateway checks every call' } });
const published = await client.callTool({ name: `${prefix}.publish`, arguments: { name: `${prefix}-draft`, text: 'a b c' } });
const logo = await client.callTool({ name: `${prefix}.logo`, arguments: {} });
const logoResource = await client.readResource({ uri: `logo://${prefix}` });
// Notifications travel on the session's own stream: wait (bounded) until both have arrived.
for (let i = 0; i < 200 && !(heard.includes('updated words://hello') && heard.includes('resources/list_changed')); i++) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
console.log(JSON.stringify({
  tools, templates, read, missing, prompts, prompt, completion: completion.completion, report, roots, headline, asked,
  published, logo, logoResource, heard,
}));
await client.close();
