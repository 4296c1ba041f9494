import type { ContentBlock, Plugin, Response } from "./index.js";

export class Result {
  readonly content: ContentBlock[];
  readonly structured: unknown;
  readonly isError: boolean;
  readonly text: string;
}

/** A tool's result does not match its output schema: the gateway would refuse it. */
export class OutputMismatch extends Error {}

type Stub = (request: { method: string; path: string; headers: [string, string][]; body?: Uint8Array }) => Response;

export interface TestHostOptions {
  tenant?: string;
  issuer?: string;
  subject?: string;
  clientId?: string;
  scopes?: string[];
  config?: Record<string, string>;
  claims?: Record<string, unknown>;
  /** What the client can answer (default: everything). */
  client?: { sampling?: boolean; elicitation?: boolean; roots?: boolean };
  /** Per service: one stub, or stubs by `"METHOD /path"`. */
  downstream?: Record<string, Stub | Record<string, Stub>>;
}

export class TestHost {
  constructor(opts?: TestHostOptions);
  readonly logs: { level: string; logger?: string; message: string }[];
  readonly progressReports: { progress: number; total?: number; message?: string }[];
  readonly requests: { service: string; method: string; path: string; headers: [string, string][]; body?: Uint8Array }[];
  readonly notifications: ({ listsChanged: string[] } | { resourceUpdated: string })[];
  answer(need: unknown, value: unknown): void;
  callTool(plugin: Plugin, name: string, args?: Record<string, unknown>): Result;
  readResource(plugin: Plugin, uri: string): { body: string | Uint8Array; mimeType?: string };
  getPrompt(plugin: Plugin, name: string, args?: Record<string, string>): ["user" | "assistant", string | ContentBlock][];
  complete(plugin: Plugin, reference: { prompt: string } | { resourceTemplate: string }, argName: string, prefix: string): string[];
}

/** MCP spoken to a plugin in-process, as the gateway serves it. */
export class McpTestClient {
  constructor(plugin: Plugin, host?: TestHost);
  request(method: string, params?: Record<string, unknown>): { result: any } | { error: { code: number; message: string } };
}
