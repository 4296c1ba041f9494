import type { ContentBlock, Plugin, Response } from "./index.js";

export class Result {
  readonly content: ContentBlock[];
  readonly structured: unknown;
  readonly isError: boolean;
  readonly text: string;
}

export interface TestHostOptions {
  tenant?: string;
  issuer?: string;
  subject?: string;
  clientId?: string;
  scopes?: string[];
  config?: Record<string, string>;
  claims?: Record<string, unknown>;
  client?: { sampling?: boolean; elicitation?: boolean; roots?: boolean };
  downstream?: Record<string, (request: { method: string; path: string; headers: [string, string][]; body?: Uint8Array }) => Response>;
}

export class TestHost {
  constructor(opts?: TestHostOptions);
  readonly logs: { level: string; logger?: string; message: string }[];
  readonly progressReports: { progress: number; total?: number; message?: string }[];
  readonly requests: { service: string; method: string; path: string; headers: [string, string][]; body?: Uint8Array }[];
  answer(need: unknown, value: unknown): void;
  callTool(plugin: Plugin, name: string, args?: Record<string, unknown>): Result;
  readResource(plugin: Plugin, uri: string): { body: string | Uint8Array; mimeType?: string };
  getPrompt(plugin: Plugin, name: string, args?: Record<string, string>): ["user" | "assistant", string][];
}
