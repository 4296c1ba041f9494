// Types for portcullis-sdk: tools' argument types follow from their `input` schema, so a
// TypeScript (or `// @ts-check` JSDoc) plugin gets typed arguments from one declaration.

export interface Schema<T = unknown> {
  readonly json: Record<string, unknown>;
  readonly optional: boolean;
  toJSON(): Record<string, unknown>;
  check(value: unknown, path?: string): string[];
  describe(description: string): Schema<T>;
  /** Phantom: the type a value of this schema has. */
  readonly __type?: T;
}
export type Infer<S> = S extends Schema<infer T> ? T : never;

type Described = string | { description?: string; title?: string; default?: unknown };
type Optional<S> = S & { readonly optional: true };
type ObjectOf<P extends Record<string, Schema>> = {
  [K in keyof P as P[K] extends { optional: true } ? never : K]: Infer<P[K]>;
} & {
  [K in keyof P as P[K] extends { optional: true } ? K : never]?: Infer<P[K]>;
};

export namespace s {
  function string(opts?: Described | { description?: string; minLength?: number; maxLength?: number; pattern?: string; format?: string }): Schema<string>;
  function number(opts?: Described | { description?: string; minimum?: number; maximum?: number }): Schema<number>;
  function integer(opts?: Described | { description?: string; minimum?: number; maximum?: number }): Schema<number>;
  function boolean(opts?: Described): Schema<boolean>;
  function oneOf<const V extends readonly string[]>(values: V, opts?: Described): Schema<V[number]>;
  function array<T>(items: Schema<T>, opts?: Described | { description?: string; minItems?: number; maxItems?: number }): Schema<T[]>;
  function object<P extends Record<string, Schema>>(properties: P, opts?: Described | { description?: string; open?: boolean }): Schema<ObjectOf<P>>;
  function optional<T>(schema: Schema<T>): Optional<Schema<T>>;
  function raw(json: Record<string, unknown>): Schema<unknown>;
}

export class ToolError extends Error {}
export class InvalidArguments extends ToolError {}
/** Thrown by a resource's read function: no such resource (MCP -32002). */
export class NotFound extends Error {
  constructor(message?: string);
}
export class NeedInput extends Error {
  readonly key: string;
  readonly state: string | undefined;
}
export type DownstreamErrorKind = "unknown-service" | "not-granted" | "credential" | "blocked" | "timeout" | "too-large" | "transport";
export class DownstreamError extends Error {
  constructor(kind: DownstreamErrorKind, detail?: string);
  readonly kind: DownstreamErrorKind;
  readonly detail: string;
}

export class Response {
  constructor(status: number, body?: string | Uint8Array, headers?: [string, string][]);
  readonly status: number;
  readonly headers: [string, string][];
  readonly body: Uint8Array;
  text(): string;
  json(): unknown;
  header(name: string): string | undefined;
  ok(): this;
}

export interface FetchInit {
  method?: string;
  headers?: [string, string][];
  body?: string | Uint8Array;
  json?: unknown;
}
export function fetch(service: string, path: string, init?: FetchInit): Response;

export type LogLevel = "debug" | "info" | "notice" | "warning" | "error" | "critical" | "alert" | "emergency";
export function log(message: string, opts?: { level?: LogLevel; logger?: string }): void;
export function notifyListsChanged(kinds: { tools?: boolean; prompts?: boolean; resources?: boolean }): void;
export function notifyResourceUpdated(uri: string): void;

export type ContentBlock =
  | { type: "text"; text: string }
  /** `data`: the bytes, or base64 text (MCP's wire form). */
  | { type: "image" | "audio"; data: Uint8Array | string; mimeType: string }
  | { type: "resource_link"; uri: string; name: string; title?: string; description?: string; mimeType?: string }
  | { type: "resource"; uri: string; mimeType?: string; text?: string; blob?: Uint8Array };

export class Output {
  constructor(opts?: { text?: string; content?: ContentBlock[]; structured?: unknown; isError?: boolean });
  static error(text: string): Output;
}

export class Context {
  readonly tenant: string;
  readonly issuer: string | undefined;
  readonly subject: string | undefined;
  readonly clientId: string | undefined;
  readonly scopes: string[];
  readonly requestId: string;
  readonly client: { sampling: boolean; elicitation: boolean; roots: boolean };
  readonly state: string | undefined;
  hasScope(scope: string): boolean;
  claim(name: string): unknown;
  config(key: string, fallback?: string): string | undefined;
  progress(progress: number, total?: number, message?: string): void;
  keepState(state: string): void;
  answer(key: string): unknown;
  elicit<P extends Record<string, Schema>>(key: string, message: string, fields: Schema<ObjectOf<P>>): ObjectOf<P> | null;
  sample(key: string, params: Record<string, unknown>): unknown;
  roots(key?: string): { uri: string; name?: string }[];
}

export interface ToolDef<I extends Schema, O extends Schema | undefined> {
  name: string;
  title?: string;
  description?: string;
  input?: I;
  output?: O;
  scopes?: string[];
  readOnly?: boolean;
  destructive?: boolean;
  idempotent?: boolean;
  openWorld?: boolean;
  /** May run as an MCP Task: "optional", "required", or with where its questions are answered. */
  task?: "optional" | "required" | { support: "optional" | "required"; input?: "in-task" | "before-task" };
  /** Each call needs a person's approval (RFC 9396 authorization details of `type`). */
  approval?: { type: string; bind?: string[]; singleUse?: boolean; maxAgeSecs?: number };
}
type ToolReturn<O> = O extends Schema<infer T> ? T | Output : string | Output | unknown;

export interface PromptArgument {
  name: string;
  title?: string;
  description?: string;
  required?: boolean;
  complete?: (ctx: Context, prefix: string) => string[];
}

export class Plugin {
  tool<I extends Schema = Schema<{}>, O extends Schema | undefined = undefined>(
    def: ToolDef<I, O>,
    run: (ctx: Context, args: Infer<I>) => ToolReturn<O>,
  ): this;
  resource(
    def: { uri: string; name: string; title?: string; description?: string; mimeType?: string; scopes?: string[] },
    read: (ctx: Context) => string | Uint8Array,
  ): this;
  resourceTemplate(
    def: {
      uriTemplate: string;
      name: string;
      title?: string;
      description?: string;
      mimeType?: string;
      scopes?: string[];
      complete?: Record<string, (ctx: Context, prefix: string) => string[]>;
    },
    read: (ctx: Context, vars: Record<string, string>, uri: string) => string | Uint8Array,
  ): this;
  prompt(
    def: { name: string; title?: string; description?: string; arguments?: PromptArgument[]; scopes?: string[] },
    get: (ctx: Context, args: Record<string, string>) => string | ["user" | "assistant", string | ContentBlock][],
  ): this;
  taskTools(): { name: string; support: "optional" | "required"; input: "in-task" | "before-task" }[];
  approvalRules(): { tool: string; detailType: string; bind: string[]; singleUse: boolean; maxAgeSecs: number }[];
  exports(): { tools?: unknown; resources?: unknown; prompts?: unknown; completion?: unknown; tasks?: unknown; approvals?: unknown };
}

export function matchTemplate(template: string, uri: string): Record<string, string> | null;
