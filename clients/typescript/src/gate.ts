// The governed cycle: submit, wait for a decision, run only when allowed or approved, report
// what happened. Fail closed: anything but `allowed` / `approved` throws, and the code never runs.
// The same rules as the Python SDK (faramesh.sdk.governed):
//
// - A server restart does not end the cycle: the submit carries a fresh Idempotency-Key, so
//   it is retried safely when its answer was lost; the wait retries on its own; the result
//   report is retried for a while. Retries stop at the caller's deadline (`timeout`) with
//   ServerUnavailable: nothing ran.
// - When the caller stops waiting while the action is held (its deadline, or its AbortSignal:
//   a framework's tool timeout, a shutdown), `onAbandon` says what becomes of it: "keep" (the
//   default) leaves it held, so the same call made again re-attaches to it and runs once with
//   its approval; "cancel" withdraws it, best effort. Either way the code does not run for
//   that call.

import { randomUUID } from "node:crypto";

import { canonicalJson } from "./canonical.js";
import { ExecutionGovernorClient, PENDING } from "./client.js";
import { ActionDenied, ApprovalTimeout, ConflictError, FarameshClientError, ServerUnavailable } from "./errors.js";
import { describeError, jsonable, jsonParams } from "./json.js";
import {
  type JWKS,
  type PermitClaims,
  PermitError,
  PermitExpired,
  PermitKeys,
  permitKeysOf,
  PermitUnknownKey,
  verifyAction,
} from "./permit.js";
import { nextDelay, now, sleep } from "./retry.js";
import type { Action, JsonObject } from "./types.js";

/** What becomes of a held action when the caller stops waiting for it. */
export type OnAbandon = "keep" | "cancel";
export const ON_ABANDON_CHOICES: readonly OnAbandon[] = ["keep", "cancel"];
export const DEFAULT_ON_ABANDON: OnAbandon = "keep";
/** Seconds a governed call waits for a person by default. */
export const DEFAULT_TIMEOUT = 300;
/** Seconds a result report is retried while the server is unavailable (the code has run). */
export const REPORT_RETRY_SECONDS = 30;
/** Longest a best-effort cancel may hold up a caller that stopped waiting, in seconds. */
export const CANCEL_GRACE = 5;
/** When waiting without a limit, ask the server again this often (seconds). */
const FOREVER_SLICE = 3600;

export const RUNNABLE: ReadonlySet<string> = new Set(["allowed", "approved"]);
// Statuses in which the code has not run and the action can still be withdrawn.
const WITHDRAWABLE: ReadonlySet<string> = new Set([PENDING, "approved"]);

/** Where the cycle says what it did with an abandoned action and a lost report (default: console). */
export interface Logger {
  warn(message: string): void;
  info?(message: string): void;
}

export interface GateOptions {
  /** Faramesh tool name. */
  tool: string;
  /** Faramesh operation (default "invoke"). */
  operation?: string;
  /** Default: a client from FARAMESH_URL / FARAMESH_API_KEY. */
  client?: ExecutionGovernorClient;
  /** Seconds to wait for a person's decision (default 300); null waits without limit. */
  timeout?: number | null;
  /** Sent with every submission, e.g. {agent_id: "billing-bot"}. */
  context?: JsonObject;
  /** Top-level agent id claim (a key bound to an agent overrides it). */
  agentId?: string;
  /** "keep" (default) or "cancel" a held action when the caller stops waiting for it. */
  onAbandon?: OnAbandon;
  /** false: never re-attach to an identical held action; always ask anew. Default true. */
  reattach?: boolean;
  /**
   * The permit step before the code runs (the Python SDK's rule by default):
   * - "auto" (default): when the action carries a permit, verify it (signature, expiry, and
   *   that it covers this tool, operation and the params about to run), then take the single
   *   start, and keep the execution lease alive while the code runs; an action without a
   *   permit (a server that issues none) runs without either.
   * - "require": the same, and an action without a permit does not run.
   * - "off": neither verify nor start.
   * A permit that does not verify, or a start someone else took, means nothing runs.
   */
  permits?: PermitMode;
  /** Where the permit keys come from (default: the server's `GET /v1/permits/keys`, through the client). */
  permitKeys?: PermitKeys | JWKS | string;
  /** Allowed clock skew, in seconds, when judging a permit's expiry (default 0). */
  permitLeeway?: number;
  logger?: Logger;
}

export type PermitMode = "auto" | "require" | "off";

// Permit keys fetched from a client's server, shared by every gate on that client.
const SERVER_KEYS = new WeakMap<ExecutionGovernorClient, PermitKeys>();

/** What the governed code is told about its action. */
export interface DecidedCall {
  /** The action as decided (`allowed` or `approved`). */
  action: Action;
  /** The params as decided: use these, an approver may have changed them. */
  params: JsonObject;
  /** Whether the decided params differ from the ones submitted. */
  edited: boolean;
  /** Whether the submit picked up an earlier identical held action instead of creating one. */
  reattached: boolean;
  /** The verified permit's claims (undefined when no permit was checked). */
  permit: PermitClaims | undefined;
}

/** What to report for a value the governed code returned. */
export interface Outcome {
  success: boolean;
  result?: unknown;
  error?: string;
}

export interface RunOptions<T> {
  /** Aborting it while the action is held abandons the wait (see `onAbandon`); the code never runs. */
  signal?: AbortSignal | undefined;
  /** Map the returned value to the report (default: success, with the value as the result). */
  outcome?: (value: T) => Outcome;
}

export function actionLabel(tool: string, operation: string): string {
  return `${tool}.${operation}`;
}

function seconds(timeout: number | null): string {
  return timeout === null ? "the time allowed" : `${timeout}s`;
}

/** The action if it may run now; ActionDenied or ApprovalTimeout otherwise (fail closed). */
export function runnable(action: Action, label: string, timeout: number | null): Action {
  const { status, id } = action;
  if (RUNNABLE.has(status) && typeof id === "string" && id) return action;
  if (status === PENDING) {
    throw new ApprovalTimeout(
      `${label}: no decision within ${seconds(timeout)}; action ${id} is still pending_approval and was not run`,
      { action },
    );
  }
  if (status === "denied") {
    throw new ActionDenied(`${label} denied: ${action.reason || "no reason given"} (action ${id})`, { action });
  }
  throw new ActionDenied(`${label} not run: action ${id} is '${status}', not allowed or approved`, { action });
}

/** The params as decided; an approver may have changed them. */
export function approvedParams(action: Action, label: string): JsonObject {
  const params = action.params as unknown;
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    throw new FarameshClientError(`${label}: the server's answer has no params object; not running`);
  }
  return params as JsonObject;
}

export function checkOnAbandon(value: unknown, where: string): OnAbandon {
  if (value !== "keep" && value !== "cancel") {
    throw new RangeError(`${where}: onAbandon must be "keep" or "cancel", not ${JSON.stringify(value)}`);
  }
  return value;
}

/** Submit, wait, run only when allowed or approved, report: for one tool and operation. */
export class Gate {
  readonly tool: string;
  readonly operation: string;
  readonly timeout: number | null;
  readonly context: JsonObject | undefined;
  readonly agentId: string | undefined;
  readonly onAbandon: OnAbandon;
  readonly reattach: boolean;
  readonly logger: Logger;
  readonly permits: PermitMode;
  readonly permitLeeway: number;
  #client: ExecutionGovernorClient | undefined;
  #permitKeys: PermitKeys | undefined;

  constructor(options: GateOptions) {
    if (typeof options.tool !== "string" || !options.tool) throw new TypeError("a governed call needs a tool name");
    this.tool = options.tool;
    this.operation = options.operation ?? "invoke";
    this.timeout = options.timeout === undefined ? DEFAULT_TIMEOUT : options.timeout;
    if (this.timeout !== null && !(this.timeout >= 0)) throw new RangeError(`${this.label}: timeout must be seconds >= 0 or null`);
    this.context = options.context ? jsonParams(options.context, `${this.label} context`) : undefined;
    this.agentId = options.agentId;
    this.onAbandon = checkOnAbandon(options.onAbandon ?? DEFAULT_ON_ABANDON, this.label);
    this.reattach = options.reattach ?? true;
    this.logger = options.logger ?? console;
    this.permits = options.permits ?? "auto";
    if (!["auto", "require", "off"].includes(this.permits)) {
      throw new RangeError(`${this.label}: permits must be "auto", "require" or "off", not ${JSON.stringify(this.permits)}`);
    }
    this.permitLeeway = options.permitLeeway ?? 0;
    this.#permitKeys = options.permitKeys === undefined ? undefined : permitKeysOf(options.permitKeys);
    this.#client = options.client;
  }

  get label(): string {
    return actionLabel(this.tool, this.operation);
  }

  /** The client this gate uses (built from the environment on first use when none was given). */
  get client(): ExecutionGovernorClient {
    this.#client ??= new ExecutionGovernorClient();
    return this.#client;
  }

  /** The keys this gate verifies permits with (the client's server's, shared per client, unless given). */
  get permitKeys(): PermitKeys {
    if (this.#permitKeys) return this.#permitKeys;
    const client = this.client;
    let keys = SERVER_KEYS.get(client);
    if (!keys) {
      keys = PermitKeys.fromLoader(() => client.permitKeys());
      SERVER_KEYS.set(client, keys);
    }
    return keys;
  }

  /**
   * Submit and wait: the runnable action, else ActionDenied / ApprovalTimeout. Nothing is run,
   * started or reported, and the permit is not checked: that is the caller's part then.
   */
  async decide(params: unknown, options: { signal?: AbortSignal | undefined } = {}): Promise<Action> {
    return this.#submitAndWait(jsonParams(params, this.label), options.signal);
  }

  /**
   * The whole cycle. `call` runs only when the action is allowed or approved, with the params
   * as decided; its value (or its exception, which is then rethrown) is reported.
   */
  async run<T>(
    params: unknown,
    call: (params: JsonObject, decided: DecidedCall) => T | PromiseLike<T>,
    options: RunOptions<T> = {},
  ): Promise<T> {
    const checked = jsonParams(params, this.label);
    let action = await this.#submitAndWait(checked, options.signal);
    // Nothing has run yet: a refusal here throws without a report (the action stays as it is).
    const decided = approvedParams(action, this.label);
    let permit: PermitClaims | undefined;
    [action, permit] = await this.#checkPermit(action, decided);
    if (options.signal?.aborted) {
      // Stopped between the decision and the run: the code does not run; an approved action
      // is kept for the same call made again, or withdrawn, as for any abandoned wait.
      if (WITHDRAWABLE.has(action.status)) await this.#abandon(action, this.#why(options.signal.reason, options.signal));
      throw options.signal.reason;
    }
    // The single start: a ConflictError here means another caller took it (nothing runs for
    // this one, and its result is theirs to report).
    const lease = permit ? this.#keepLeased(await this.client.start(action.id)) : undefined;
    let value: T;
    try {
      value = await call(decided, {
        action,
        params: decided,
        edited: canonicalJson(decided) !== canonicalJson(checked),
        reattached: action.reattached === true,
        permit,
      });
    } catch (err) {
      lease?.stop();
      await this.#report(action.id, { success: false, error: describeError(err) });
      throw err;
    }
    lease?.stop();
    await this.#report(action.id, options.outcome ? options.outcome(value) : { success: true, result: jsonable(value) });
    return value;
  }

  /**
   * The permit must allow exactly this call; ActionDenied (with the PermitError as its cause)
   * otherwise. A key unknown to keys fetched earlier (a rotation) fetches them once more; an
   * expired permit is read again (the server renews it for its agent), at most twice.
   */
  async #checkPermit(action: Action, params: JsonObject): Promise<[Action, PermitClaims | undefined]> {
    if (this.permits === "off") return [action, undefined];
    if (action.permit === undefined || action.permit === null) {
      if (this.permits === "auto") return [action, undefined];
      throw new ActionDenied(`${this.label} not run: action ${action.id} carries no permit (permits: "require")`, { action });
    }
    const keys = this.permitKeys;
    for (let attempt = 0; ; attempt++) {
      try {
        const claims = await verifyAction(action, {
          tool: this.tool,
          operation: this.operation,
          params,
          keys,
          leeway: this.permitLeeway,
        });
        return [action, claims];
      } catch (err) {
        if (!(err instanceof PermitError)) throw err;
        if (err instanceof PermitUnknownKey && attempt === 0 && (await keys.refresh().catch(() => false))) continue;
        if (err instanceof PermitExpired && attempt < 2) {
          action = await this.client.getAction(action.id);
          continue;
        }
        throw new ActionDenied(`${this.label} not run: its permit does not allow this call (${err.message})`, { action, cause: err });
      }
    }
  }

  /** Heartbeats through a third of the execution lease while the code runs (failures are logged). */
  #keepLeased(started: Action): { stop(): void } {
    const from = Date.parse(started.execution?.started_at ?? "");
    const until = Date.parse(started.execution?.lease_expires_at ?? "");
    const lease = until - from;
    if (!Number.isFinite(lease) || lease <= 0) return { stop() {} };
    const timer = setInterval(() => {
      this.client.heartbeat(started.id).catch((err: unknown) => {
        this.logger.warn(`${this.label}: could not extend the execution lease of action ${started.id}: ${describeError(err)}`);
      });
    }, Math.max(1000, lease / 3));
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  async #submitAndWait(params: JsonObject, signal: AbortSignal | undefined): Promise<Action> {
    const client = this.client;
    const deadline = this.timeout === null ? null : now() + this.timeout * 1000;
    const key = randomUUID().replaceAll("-", ""); // one per governed call: a repeated submit returns the same action
    let attempt = 0;
    let action: Action;
    for (;;) {
      try {
        action = await client.submitAction({
          tool: this.tool,
          operation: this.operation,
          params,
          ...(this.context ? { context: this.context } : {}),
          ...(this.agentId !== undefined ? { agentId: this.agentId } : {}),
          idempotencyKey: key,
          reattach: this.reattach,
          ...(signal ? { signal } : {}),
        });
        break;
      } catch (err) {
        if (signal?.aborted) throw err;
        await sleep(nextDelay(err, attempt, deadline, `${this.label}: submitting`), signal);
        attempt += 1;
      }
    }
    try {
      const id = action.id;
      if (action.status === PENDING) {
        const wait = signal ? { signal } : {};
        if (deadline === null) {
          while (action.status === PENDING) action = await client.waitForDecision(id, { timeout: FOREVER_SLICE, ...wait });
        } else {
          action = await client.waitForDecision(id, { timeout: Math.max(0, (deadline - now()) / 1000), ...wait });
        }
      }
      return runnable(action, this.label, this.timeout);
    } catch (err) {
      // Nothing has run. A held action is kept for a retry or withdrawn, never left unsaid.
      if (WITHDRAWABLE.has(action.status) && !(err instanceof ActionDenied)) {
        const [last, what] = await this.#abandon(action, this.#why(err, signal));
        if (err instanceof ApprovalTimeout) {
          err.message = `${err.message} ${what}`;
          err.action = last;
          err.actionId = last.id;
        }
      }
      throw err;
    }
  }

  #why(err: unknown, signal: AbortSignal | undefined): string {
    if (err instanceof ServerUnavailable) return "the Faramesh server was unavailable until the caller's deadline";
    if (err instanceof ApprovalTimeout) return `no decision within ${seconds(this.timeout)}`;
    if (signal?.aborted) return "the call was aborted (a tool or client timeout, or a shutdown)";
    return `the wait failed (${describeError(err)})`;
  }

  /** Keep or cancel (best effort, bounded by CANCEL_GRACE) a held action its caller stopped waiting for. Never throws. */
  async #abandon(action: Action, why: string): Promise<[Action, string]> {
    const id = action.id;
    if (this.onAbandon === "keep") {
      this.logger.warn(
        `${this.label}: stopped waiting for action ${id} (${why}); it stays held, and the same call made again re-attaches to it`,
      );
      return [
        action,
        'It stays held (onAbandon="keep"): the same call made again picks up its decision; an approval nobody picks up lapses on the server.',
      ];
    }
    try {
      // Its own deadline: the caller's signal is usually why we are here (already aborted).
      const cancelled = await this.client.cancel(id, {
        reason: `The agent stopped waiting: ${why}`,
        signal: AbortSignal.timeout(CANCEL_GRACE * 1000),
      });
      this.logger.info?.(`${this.label}: cancelled action ${id} because the caller stopped waiting (${why})`);
      return [cancelled, 'It was cancelled (onAbandon="cancel").'];
    } catch (err) {
      this.logger.warn(`${this.label}: could not cancel action ${id} after the caller stopped waiting: ${describeError(err)}`);
      const current = err instanceof ConflictError ? err.currentStatus : undefined;
      if (current) return [action, `Cancelling it was refused: it is ${current} now.`];
      return [action, `Cancelling it failed (${describeError(err)}), so it may still be held.`];
    }
  }

  /**
   * Report what happened. The code has already run: a failed report is logged, never thrown,
   * so a caller does not retry (and repeat) an action that happened.
   */
  async #report(actionId: string, outcome: Outcome): Promise<void> {
    const deadline = now() + REPORT_RETRY_SECONDS * 1000;
    const body = {
      success: outcome.success,
      ...(outcome.result !== undefined ? { result: outcome.result } : {}),
      ...(outcome.error !== undefined ? { error: outcome.error } : {}),
    };
    for (let attempt = 0; ; attempt++) {
      let delay: number;
      try {
        await this.client.reportResult(actionId, body);
        return;
      } catch (err) {
        // A 409 on a repeated report: the try whose answer was lost did record the result.
        if (attempt > 0 && err instanceof ConflictError && ["succeeded", "failed"].includes(err.currentStatus ?? "")) return;
        try {
          delay = nextDelay(err, attempt, deadline, `reporting the result of action ${actionId}`);
        } catch (final) {
          this.logger.warn(`could not report the result of action ${actionId}: ${describeError(final)}`);
          return;
        }
      }
      await sleep(delay);
    }
  }
}
