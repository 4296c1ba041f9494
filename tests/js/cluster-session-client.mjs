// The official TypeScript SDK client running one whole 2025 session through a load balancer:
// initialize, list, calls that log and report progress, a tool that asks for input
// (elicitation answered by this client), more calls, then DELETE. Prints a JSON transcript
// for the Rust test, which checks in the balancer's log that the session's requests landed
// on different replicas.
//
// usage: node cluster-session-client.mjs <mcp url> <extra calls>
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const [url, extra] = [process.argv[2], Number(process.argv[3] ?? 6)];
const client = new Client({ name: 'portcullis-cluster', version: '1.0.0' }, { capabilities: { elicitation: {} } });
const logs = [];
const elicitations = [];
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logs.push(n.params.data));
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  elicitations.push(req.params.message);
  return { action: 'accept', content: { username: 'ada', email: 'ada@example.com' } };
});
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const text = (r) => r.content.map((c) => c.text).join('');
const transcript = { session: transport.sessionId, protocol: transport.protocolVersion };
transcript.tools = (await client.listTools()).tools.length;
transcript.simple = text(await client.callTool({ name: 'test_simple_text', arguments: {} }));
transcript.logged = text(await client.callTool({ name: 'test_tool_with_logging', arguments: {} }));
const progress = [];
transcript.progressed = text(await client.callTool(
  { name: 'test_tool_with_progress', arguments: {} }, undefined,
  { onprogress: (p) => progress.push(p.progress) }));
transcript.elicited = text(await client.callTool({ name: 'test_elicitation', arguments: { message: 'Who are you?' } }));
let calls = 0;
for (let i = 0; i < extra; i++) {
  if (text(await client.callTool({ name: 'test_simple_text', arguments: {} })).length > 0) calls++;
}
transcript.extra_calls = calls;
transcript.logs = logs;
transcript.progress = progress;
transcript.elicitations = elicitations;
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(transcript));
process.exit(0);
