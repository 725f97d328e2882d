// When the SDK asks again, and how long it waits in between (the Python SDK's rules,
// faramesh.sdk.retry). Only requests that are safe to repeat are retried: waits, a result
// report, and a submit that carries an Idempotency-Key. They are retried on what a restart,
// a deploy or a lost replica looks like: the server cannot be reached, or answers 502/503/504
// (503 + Retry-After while it stops), or 429. Each retry waits a capped exponential backoff
// with jitter, at least the server's Retry-After, and never past the caller's deadline; at
// the deadline the caller gets ServerUnavailable (nothing ran).

import { setTimeout as sleepFor } from "node:timers/promises";

import { FarameshConnectionError, RateLimitError, ServerError, ServerUnavailable } from "./errors.js";

export const RETRY_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);
/** Seconds before the first retry (before jitter). */
export const BACKOFF_BASE = 0.25;
/** Longest pause between two tries, in seconds (before jitter). */
export const BACKOFF_CAP = 5;
/** A Retry-After longer than this (seconds) is not waited for in one go. */
export const RETRY_AFTER_CAP = 60;

/** Whether a failed request that is safe to repeat should be tried again. */
export function retryable(err: unknown): boolean {
  if (err instanceof FarameshConnectionError || err instanceof RateLimitError) return true;
  return err instanceof ServerError && RETRY_STATUSES.has(err.statusCode);
}

/** Seconds to wait before try number `attempt + 1` (attempt counts from 0). */
export function backoff(attempt: number, retryAfter?: number): number {
  let delay = Math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt) * (0.5 + Math.random() * 0.5);
  if (retryAfter !== undefined) delay = Math.max(delay, Math.min(retryAfter, RETRY_AFTER_CAP));
  return delay;
}

/** Milliseconds on a monotonic clock. */
export function now(): number {
  return performance.now();
}

/**
 * Milliseconds to wait before trying again after `err`. Throws instead when `err` is not worth
 * retrying (it is rethrown) or the deadline (a `now()` value, or null for none) has passed
 * (ServerUnavailable, with `err` as its cause).
 */
export function nextDelay(err: unknown, attempt: number, deadline: number | null, what: string, actionId?: string): number {
  if (!retryable(err)) throw err;
  const left = deadline === null ? null : deadline - now();
  if (left !== null && left <= 0) {
    const message = err instanceof Error ? err.message : String(err);
    throw new ServerUnavailable(`${what}: gave up at the deadline, the server is unavailable (${message})`, {
      actionId,
      cause: err,
    });
  }
  const retryAfter = err instanceof RateLimitError || err instanceof ServerError ? err.retryAfter : undefined;
  const delay = backoff(attempt, retryAfter) * 1000;
  return left === null ? delay : Math.min(delay, left);
}

/** Wait `ms`; an aborted signal ends the wait by throwing its reason. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) throw signal.reason;
  try {
    await sleepFor(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw err;
  }
}
