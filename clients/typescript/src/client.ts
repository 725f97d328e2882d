// The HTTP client for the Faramesh server, on the platform's fetch.
//
//   import { ExecutionGovernorClient } from "@faramesh/sdk";
//   const client = new ExecutionGovernorClient();   // FARAMESH_URL and FARAMESH_API_KEY
//
// Every method returns the server's JSON. Errors throw: an API error as a typed
// FarameshAPIError subclass, an unreachable server as FarameshConnectionError. Nothing here
// ever reports an action as allowed on its own. Every request is built through the types
// generated from the server's OpenAPI document, so a path, parameter or body field the
// server does not declare does not compile.

import { clientKey, clientUrl } from "./config.js";
import { FarameshClientError, FarameshConnectionError, errorFor } from "./errors.js";
import type { OperationKey, Operations } from "./generated/openapi.js";
import { nextDelay, now, sleep } from "./retry.js";
import type { JWKS } from "./permit.js";
import { readSSE } from "./sse.js";
import type {
  Action,
  ActionEvent,
  ActionPage,
  AuditEvent,
  DecideResult,
  JsonObject,
  JsonValue,
  Status,
} from "./types.js";
import { VERSION } from "./version.js";

export const PENDING = "pending_approval";
/** Longest single long-poll, in seconds: the wait endpoint answers then with the pending action. */
export const WAIT_SLICE = 30;
/** Default per-request timeout, in seconds. */
export const DEFAULT_REQUEST_TIMEOUT = 10;
/** Default time `waitForDecision` waits, in seconds. */
export const DEFAULT_WAIT = 300;

export interface ClientOptions {
  /** Server URL; default FARAMESH_URL, then FARAMESH_BASE_URL, then http://127.0.0.1:8000. */
  baseUrl?: string;
  /** Bearer key; default FARAMESH_API_KEY, then FARAMESH_TOKEN. */
  apiKey?: string;
  /** Per-request timeout in seconds (default 10). */
  timeout?: number;
  /** The fetch to use (default: the global one), e.g. to go through a proxy or record requests. */
  fetch?: typeof globalThis.fetch;
}

/** Options every call takes. */
export interface CallOptions {
  /** Abort the call: it then throws the signal's reason. */
  signal?: AbortSignal;
}

export interface SubmitInput extends CallOptions {
  tool: string;
  operation: string;
  params?: JsonObject;
  context?: JsonObject;
  /** Claimed agent id (a key bound to an agent overrides it). */
  agentId?: string;
  /** The same key returns the same action: makes a repeated submit safe. */
  idempotencyKey?: string;
  /**
   * true (default): an identical submit while an earlier one is still held (or approved and
   * not yet run) returns that action with `reattached: true`; false always creates a new one.
   */
  reattach?: boolean;
}

export interface WaitOptions extends CallOptions {
  /** Seconds to wait in all (default 300); then the action is returned still pending. */
  timeout?: number;
}

export interface ResultInput extends CallOptions {
  success: boolean;
  result?: unknown;
  error?: string;
}

export interface ListFilters extends CallOptions {
  status?: Status;
  tool?: string;
  agentId?: string;
  /** Page size, 1-500 (default 50). */
  limit?: number;
  /** `next_cursor` of the previous page. */
  cursor?: string | number | null;
}

export interface ApproveInput extends CallOptions {
  reason?: string;
  /** Approve these edited params instead; the policy checks them again. */
  params?: JsonObject;
  /** Refuse (409) if the action's params changed since this hash was read. */
  requestHash?: string;
}

export interface DenyInput extends CallOptions {
  reason?: string;
  requestHash?: string;
}

export interface DecideInput extends CallOptions {
  tool: string;
  operation: string;
  params?: JsonObject;
  context?: JsonObject;
}

export interface StreamOptions extends CallOptions {
  /** The last `seq` seen: the stream first replays every change after it ("0": from the start). */
  lastEventId?: string | number;
}

type Parts<K extends OperationKey> = {
  path?: Operations[K]["path"] | undefined;
  query?: Operations[K]["query"] | undefined;
  headers?: Operations[K]["headers"] | undefined;
  body?: Operations[K]["body"] | undefined;
};

interface SendOptions extends CallOptions {
  /** Seconds this request may take (default: the client's timeout). */
  timeout?: number;
}

function describeCause(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === "string" ? `${code}: ${cause.message}` : cause.message;
  }
  return err.message;
}

/** A body that is not JSON on a success: refuse it rather than guess. */
function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new FarameshClientError(`${what}: the server's answer is not JSON: ${text.slice(0, 200)}`);
  }
}

export class ExecutionGovernorClient {
  readonly baseUrl: string;
  readonly apiKey: string | undefined;
  /** Per-request timeout in seconds. */
  readonly timeout: number;
  readonly #fetch: typeof globalThis.fetch;

  constructor(options: ClientOptions = {}) {
    this.baseUrl = (options.baseUrl ?? clientUrl()).replace(/\/+$/, "");
    this.apiKey = options.apiKey !== undefined ? options.apiKey : clientKey();
    this.timeout = options.timeout ?? DEFAULT_REQUEST_TIMEOUT;
    if (!(this.timeout > 0)) throw new RangeError(`timeout must be a positive number of seconds, not ${options.timeout}`);
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  // -- sending ------------------------------------------------------------------------------
  #url<K extends OperationKey>(key: K, parts: Parts<K>): { method: string; url: string } {
    const space = key.indexOf(" ");
    const method = key.slice(0, space);
    const template = key.slice(space + 1);
    const path = (parts.path ?? {}) as Record<string, unknown>;
    const filled = template.replace(/\{([^}]+)\}/g, (_, name: string) => {
      const value = path[name];
      if (typeof value !== "string" || value === "") throw new TypeError(`${key}: ${name} must be a non-empty string`);
      return encodeURIComponent(value);
    });
    const url = new URL(this.baseUrl + filled);
    for (const [name, value] of Object.entries((parts.query ?? {}) as Record<string, unknown>)) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    return { method, url: url.toString() };
  }

  #headers(extra: Record<string, unknown> | undefined, json: boolean): Record<string, string> {
    const headers: Record<string, string> = {
      Accept: "application/json",
      "User-Agent": `faramesh-typescript/${VERSION}`,
    };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    if (json) headers["Content-Type"] = "application/json";
    for (const [name, value] of Object.entries(extra ?? {})) {
      if (value !== undefined && value !== null) headers[name] = String(value);
    }
    return headers;
  }

  /**
   * Send one request; the response once its headers arrived, and a function that ends the
   * request's timer (call it when the body has been read, or at once for a stream).
   */
  async #open<K extends OperationKey>(
    key: K,
    parts: Parts<K>,
    options: SendOptions,
  ): Promise<{ response: Response; done: () => void; timer: AbortSignal }> {
    const { method, url } = this.#url(key, parts);
    const seconds = options.timeout ?? this.timeout;
    const timer = new AbortController();
    const handle = setTimeout(() => timer.abort(new Error("timeout")), Math.ceil(seconds * 1000));
    const done = () => clearTimeout(handle);
    const signal = options.signal ? AbortSignal.any([options.signal, timer.signal]) : timer.signal;
    const hasBody = parts.body !== undefined;
    try {
      const response = await this.#fetch(url, {
        method,
        headers: this.#headers(parts.headers as Record<string, unknown> | undefined, hasBody),
        body: hasBody ? JSON.stringify(parts.body) : null,
        signal,
      });
      return { response, done, timer: timer.signal };
    } catch (err) {
      done();
      throw this.#failure(err, options, timer.signal, seconds, key);
    }
  }

  #failure(err: unknown, options: SendOptions, timer: AbortSignal, seconds: number, key: string): unknown {
    if (options.signal?.aborted) return options.signal.reason;
    if (err instanceof FarameshClientError) return err;
    if (timer.aborted) {
      return new FarameshConnectionError(`no answer from Faramesh at ${this.baseUrl} within ${seconds}s (${key})`, { cause: err });
    }
    return new FarameshConnectionError(`cannot reach Faramesh at ${this.baseUrl}: ${describeCause(err)}`, { cause: err });
  }

  /** One request and its JSON answer; an error answer throws its typed error. */
  async #send<K extends OperationKey>(key: K, parts: Parts<K>, options: SendOptions = {}): Promise<any> {
    const { response, done, timer } = await this.#open(key, parts, options);
    const seconds = options.timeout ?? this.timeout;
    let text: string;
    try {
      text = await response.text();
    } catch (err) {
      // The connection went away while the answer was read (a restart): unreachable.
      throw this.#failure(err, options, timer, seconds, key);
    } finally {
      done();
    }
    if (response.status >= 400) {
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      throw errorFor(response.status, body, text.slice(0, 500), response.headers.get("Retry-After"));
    }
    return parseJson(text, key);
  }

  // -- the seed's calls -----------------------------------------------------------------------
  /** Submit an action; the answer's `status` is the decision (a denial is an answer, not an error). */
  submitAction(input: SubmitInput): Promise<Action> {
    const body: Operations["POST /v1/actions"]["body"] = {
      tool: input.tool,
      operation: input.operation,
      params: input.params ?? {},
      context: input.context ?? {},
    };
    if (input.agentId !== undefined) body.agent_id = input.agentId;
    // Sent only when opting out, so older servers see the body they know.
    if (input.reattach === false) body.reattach = false;
    const headers = input.idempotencyKey ? { "Idempotency-Key": input.idempotencyKey } : undefined;
    return this.#send("POST /v1/actions", { body, headers }, signalOf(input));
  }

  /** The action as it is now. */
  getAction(actionId: string, options: CallOptions = {}): Promise<Action> {
    return this.#send("GET /v1/actions/{action_id}", { path: { action_id: actionId } }, options);
  }

  /**
   * Wait until the action leaves `pending_approval` and return it, using the server's
   * long-poll (it answers the moment someone decides). After `timeout` seconds the action is
   * returned as it is, still pending: check `status` before executing. A restart or an
   * unreachable server (connection errors, 502/503/504, 429) is retried with backoff until
   * the deadline; then ServerUnavailable is thrown. Other errors throw at once.
   */
  async waitForDecision(actionId: string, options: WaitOptions = {}): Promise<Action> {
    const timeout = options.timeout ?? DEFAULT_WAIT;
    const deadline = now() + timeout * 1000;
    let attempt = 0;
    for (;;) {
      const left = (deadline - now()) / 1000;
      const slice = Math.max(0, Math.min(WAIT_SLICE, left));
      let action: Action;
      try {
        action = await this.#send(
          "GET /v1/actions/{action_id}/wait",
          { path: { action_id: actionId }, query: { timeout: Math.round(slice * 1000) / 1000 } },
          { timeout: slice + this.timeout, ...(options.signal ? { signal: options.signal } : {}) },
        );
      } catch (err) {
        if (options.signal?.aborted) throw err;
        await sleep(nextDelay(err, attempt, deadline, `waiting for a decision on action ${actionId}`, actionId), options.signal);
        attempt += 1;
        continue;
      }
      attempt = 0;
      if (action.status !== PENDING || left <= 0) return action;
    }
  }

  /** Report the outcome of an allowed or approved action (once, by the key that submitted it). */
  reportResult(actionId: string, input: ResultInput): Promise<Action> {
    const body: Operations["POST /v1/actions/{action_id}/result"]["body"] = { success: input.success };
    if (input.result !== undefined) body.result = input.result;
    if (input.error !== undefined) body.error = input.error;
    return this.#send("POST /v1/actions/{action_id}/result", { path: { action_id: actionId }, body }, signalOf(input));
  }

  /**
   * Withdraw an action this key submitted while it is held (or approved and not yet run): it
   * becomes `cancelled`, and approving it afterwards is refused (409).
   */
  cancel(actionId: string, options: { reason?: string } & CallOptions = {}): Promise<Action> {
    return this.#send(
      "POST /v1/actions/{action_id}/cancel",
      { path: { action_id: actionId }, body: { reason: options.reason ?? null } },
      signalOf(options),
    );
  }

  // -- running once (permits) ------------------------------------------------------------------
  /**
   * Take the single execution of an allowed or approved action before running it: it becomes
   * `executing`, with an execution lease. Only once: a second start throws ConflictError (409).
   * Verify the action's `permit` first (verifyPermit). Not retried: a start whose answer was
   * lost may have been taken.
   */
  start(actionId: string, options: CallOptions = {}): Promise<Action> {
    return this.#send("POST /v1/actions/{action_id}/start", { path: { action_id: actionId } }, options);
  }

  /** Extend the execution lease of a started action while it runs. */
  heartbeat(actionId: string, options: CallOptions = {}): Promise<Action> {
    return this.#send("POST /v1/actions/{action_id}/heartbeat", { path: { action_id: actionId } }, options);
  }

  /**
   * Say what became of an action whose outcome is unknown (started, never reported): it ran
   * (`succeeded`) or it did not (`failed`). Its submitting agent, or an approver or admin key.
   */
  reconcile(
    actionId: string,
    input: { outcome: "succeeded" | "failed"; reason?: string; result?: unknown; error?: string } & CallOptions,
  ): Promise<Action> {
    const body: Operations["POST /v1/actions/{action_id}/reconcile"]["body"] = { outcome: input.outcome };
    if (input.reason !== undefined) body.reason = input.reason;
    if (input.result !== undefined) body.result = input.result;
    if (input.error !== undefined) body.error = input.error;
    return this.#send("POST /v1/actions/{action_id}/reconcile", { path: { action_id: actionId }, body }, signalOf(input));
  }

  /** The server's public permit keys (JWKS), as verifyPermit and PermitKeys take them. */
  permitKeys(options: CallOptions = {}): Promise<JWKS> {
    return this.#send("GET /v1/permits/keys", {}, options);
  }

  // -- reading -------------------------------------------------------------------------------
  /** One page, newest first; an agent key sees only its own actions. */
  listActions(filters: ListFilters = {}): Promise<ActionPage> {
    const query: Operations["GET /v1/actions"]["query"] = { limit: filters.limit ?? 50 };
    if (filters.status !== undefined) query.status = filters.status;
    if (filters.tool !== undefined) query.tool = filters.tool;
    if (filters.agentId !== undefined) query.agent_id = filters.agentId;
    if (filters.cursor !== undefined && filters.cursor !== null) query.cursor = Number(filters.cursor);
    return this.#send("GET /v1/actions", { query }, signalOf(filters));
  }

  /** Every matching action, following `next_cursor`. */
  async *iterActions(filters: Omit<ListFilters, "cursor"> = {}): AsyncGenerator<Action> {
    let cursor: string | null = null;
    for (;;) {
      const page: ActionPage = await this.listActions({ ...filters, cursor });
      yield* page.actions;
      cursor = page.next_cursor;
      if (!cursor) return;
    }
  }

  /** The action's audit trail. */
  async getActionEvents(actionId: string, options: CallOptions = {}): Promise<AuditEvent[]> {
    const answer: { events: AuditEvent[] } = await this.#send(
      "GET /v1/actions/{action_id}/events",
      { path: { action_id: actionId } },
      options,
    );
    return answer.events;
  }

  // -- deciding (approver and admin keys) ------------------------------------------------------
  /** Approve; with `params`, approve these edited params instead (the policy checks them again). */
  approve(actionId: string, input: ApproveInput = {}): Promise<Action> {
    const body: Operations["POST /v1/actions/{action_id}/approve"]["body"] = { reason: input.reason ?? null };
    if (input.params !== undefined) body.params = input.params;
    if (input.requestHash !== undefined) body.request_hash = input.requestHash;
    return this.#send("POST /v1/actions/{action_id}/approve", { path: { action_id: actionId }, body }, signalOf(input));
  }

  /** Deny; the reason is shown to the agent. */
  deny(actionId: string, input: DenyInput = {}): Promise<Action> {
    const body: Operations["POST /v1/actions/{action_id}/deny"]["body"] = { reason: input.reason ?? null };
    if (input.requestHash !== undefined) body.request_hash = input.requestHash;
    return this.#send("POST /v1/actions/{action_id}/deny", { path: { action_id: actionId }, body }, signalOf(input));
  }

  // -- more ----------------------------------------------------------------------------------
  /** Dry run: what would the policy decide? Nothing is recorded. */
  decide(input: DecideInput): Promise<DecideResult> {
    const body: Operations["POST /v1/decide"]["body"] = {
      tool: input.tool,
      operation: input.operation,
      params: input.params ?? {},
      context: input.context ?? {},
    };
    return this.#send("POST /v1/decide", { body }, signalOf(input));
  }

  /** The active policy (approver or admin keys). */
  getPolicy(options: CallOptions = {}): Promise<Record<string, JsonValue>> {
    return this.#send("GET /v1/policy", {}, options);
  }

  /** GET /health. */
  health(options: CallOptions = {}): Promise<{ status: string; version?: string }> {
    return this.#send("GET /health", {}, options);
  }

  /**
   * Every state change as it happens (server-sent events). With `lastEventId` (the last `seq`
   * seen), first every change after it. The stream has no read timeout (the server sends
   * keep-alives); an error answer throws its typed error before the first event, a lost
   * connection throws FarameshConnectionError, and a server that stops ends the iteration
   * (call again with the last `seq` to resume). Leaving the loop closes the connection.
   */
  async *streamEvents(options: StreamOptions = {}): AsyncGenerator<ActionEvent> {
    const local = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, local.signal]) : local.signal;
    const headers =
      options.lastEventId !== undefined && options.lastEventId !== "" ? { "Last-Event-ID": String(options.lastEventId) } : undefined;
    const { response, done } = await this.#open("GET /v1/events", { headers }, { signal });
    done(); // the timeout covered the connection and the headers; events may be far apart
    try {
      if (response.status >= 400) {
        const text = await response.text();
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        throw errorFor(response.status, body, text.slice(0, 500), response.headers.get("Retry-After"));
      }
      if (!response.body) return;
      try {
        for await (const message of readSSE(response.body as AsyncIterable<Uint8Array>)) {
          // Events already received are not handed out after an abort.
          if (options.signal?.aborted) throw options.signal.reason;
          if (message.data) yield parseJson(message.data, "GET /v1/events") as ActionEvent;
        }
      } catch (err) {
        if (options.signal?.aborted) throw options.signal.reason;
        if (err instanceof FarameshClientError || local.signal.aborted) throw err;
        throw new FarameshConnectionError(`lost the event stream from ${this.baseUrl}: ${describeCause(err)}`, { cause: err });
      }
    } finally {
      local.abort(); // close the connection when the caller stops reading
    }
  }
}

function signalOf(options: CallOptions): SendOptions {
  return options.signal ? { signal: options.signal } : {};
}
