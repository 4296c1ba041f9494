// The official TypeScript SDK client (1.x) running MCP Tasks (io.modelcontextprotocol/tasks,
// SEP-2663) over a 2025-11-25 session: it declares the extension at initialize, calls a
// task-capable tool, polls tasks/get (its status message is the tool's progress) and reads
// the inlined result, or cancels the task, and hears the task's status changes as
// notifications/tasks on the session. SDK 1.x has no helper for the extension, so the
// task methods go through client.request with the result shapes checked here. Prints a JSON
// transcript for the Rust test.
//
// usage: node tasks-client.mjs <mcp url> complete|cancel [tool] [arguments as JSON]
// (default: the conformance fixture's slow_compute, 3 s to complete or 60 s to cancel)
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { z } from 'zod';

const [url, mode] = [process.argv[2], process.argv[3] ?? 'complete'];
const EXT = 'io.modelcontextprotocol/tasks';
const client = new Client(
  { name: 'portcullis-tasks', version: '1.0.0' },
  { capabilities: { extensions: { [EXT]: {} } } },
);
const notified = [];
client.fallbackNotificationHandler = async (n) => {
  if (n.method === 'notifications/tasks') notified.push(n.params.status);
};
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const any = z.object({}).passthrough();
const request = (method, params) => client.request({ method, params }, any);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const seconds = mode === 'cancel' ? 60 : 3;
const tool = process.argv[4] ?? 'slow_compute';
const args = process.argv[5] ? JSON.parse(process.argv[5]) : { seconds, label: 'report' };
const created = await request('tools/call', { name: tool, arguments: args });
const id = created.taskId;
const transcript = { protocol: transport.protocolVersion, created, statuses: [], messages: [] };
const poll = async (until) => {
  for (let i = 0; i < 200; i++) {
    const t = await request('tasks/get', { taskId: id });
    transcript.statuses.push(t.status);
    if (t.statusMessage && !transcript.messages.includes(t.statusMessage)) transcript.messages.push(t.statusMessage);
    if (until(t)) return t;
    await sleep(Math.min(created.pollIntervalMs ?? 200, 200));
  }
  throw new Error('the task did not settle');
};
if (mode === 'cancel') {
  await poll((t) => t.statusMessage);
  transcript.cancel = await request('tasks/cancel', { taskId: id });
  transcript.final = await poll((t) => ['completed', 'failed', 'cancelled'].includes(t.status));
} else {
  transcript.final = await poll((t) => ['completed', 'failed', 'cancelled'].includes(t.status));
}
// The terminal status's notification may trail the poll that saw it.
for (let i = 0; i < 50 && !notified.includes(transcript.final.status); i++) await sleep(50);
transcript.notified = notified;
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(transcript));
