// Everything the SDK throws, mirroring the Python SDK (faramesh.sdk.errors): an API error is a
// FarameshAPIError subclass chosen by its HTTP status, carrying the server's message and code.

import type { Action } from "./types.js";

/** Base class of everything the SDK throws. */
export class FarameshClientError extends Error {
  override name = "FarameshClientError";
}

/**
 * The server could not be reached (or did not answer in time). Nothing may be executed on
 * this basis. `ServerUnavailable` is one too (`instanceof` says so), as in the Python SDK
 * where it derives from both ApprovalTimeout and FarameshConnectionError.
 */
export class FarameshConnectionError extends FarameshClientError {
  override name = "FarameshConnectionError";

  static override [Symbol.hasInstance](value: unknown): boolean {
    // JavaScript has single inheritance; this keeps `err instanceof FarameshConnectionError`
    // true for a ServerUnavailable, as handlers written for the Python SDK expect.
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    return this === FarameshConnectionError && value instanceof ServerUnavailable;
  }
}

function idOf(action: Partial<Action> | undefined): string | undefined {
  return typeof action?.id === "string" ? action.id : undefined;
}

/** No decision arrived in time. The action stays on the server (see `onAbandon`); nothing ran. */
export class ApprovalTimeout extends FarameshClientError {
  override name = "ApprovalTimeout";
  /** The action as last known, when there is one. */
  action: Action | undefined;
  actionId: string | undefined;

  constructor(message: string, options: { action?: Action | undefined; actionId?: string | undefined; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.action = options.action;
    this.actionId = options.actionId ?? idOf(options.action);
  }
}

/**
 * The server could not be reached (or was restarting) until the caller's deadline, although
 * the SDK kept retrying. Fail closed: nothing ran. Both an ApprovalTimeout and (through
 * `instanceof`) a FarameshConnectionError.
 */
export class ServerUnavailable extends ApprovalTimeout {
  override name = "ServerUnavailable";
}

/** The action was denied (by policy, by a person, or because its approval expired or was cancelled). The governed code never ran. */
export class ActionDenied extends FarameshClientError {
  override name = "ActionDenied";
  action: Action | undefined;
  actionId: string | undefined;
  status: string | undefined;
  reason: string | undefined;

  constructor(message: string, options: { action?: Action | undefined; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.action = options.action;
    this.actionId = idOf(options.action);
    this.status = typeof options.action?.status === "string" ? options.action.status : undefined;
    this.reason = typeof options.action?.reason === "string" ? options.action.reason : undefined;
  }
}

export interface APIErrorOptions {
  statusCode: number;
  code?: string | undefined;
  field?: string | undefined;
  body?: unknown;
}

/** An error answer from the server (4xx / 5xx), in its documented JSON shape. */
export class FarameshAPIError extends FarameshClientError {
  override name = "FarameshAPIError";
  readonly statusCode: number;
  /** `error.code`, e.g. `invalid_transition` (see ERROR_CODES). */
  readonly code: string | undefined;
  /** `error.field`: the input at fault, when the server named one. */
  readonly field: string | undefined;
  /** The parsed JSON body (or undefined when it was not JSON). */
  readonly body: unknown;

  constructor(message: string, options: APIErrorOptions) {
    super(message);
    this.statusCode = options.statusCode;
    this.code = options.code;
    this.field = options.field;
    this.body = options.body;
  }

  /** The server's `detail` (the message). */
  get detail(): string {
    return this.message;
  }

  /** For a 409: the action's status at the time of the conflict. */
  get currentStatus(): string | undefined {
    const error = errorObject(this.body);
    return typeof error?.status === "string" ? error.status : undefined;
  }
}

/** 401: missing, unknown or revoked key. */
export class AuthenticationError extends FarameshAPIError {
  override name = "AuthenticationError";
}

/** 403: the key's role or identity does not allow this. */
export class PermissionDeniedError extends FarameshAPIError {
  override name = "PermissionDeniedError";
}

/** 404. */
export class NotFoundError extends FarameshAPIError {
  override name = "NotFoundError";
}

/** 409: the transition is not allowed now (another decision won, or the status is wrong); see `currentStatus`. */
export class ConflictError extends FarameshAPIError {
  override name = "ConflictError";
}

/** 422 (and other 4xx about the request itself); `field` names the culprit. */
export class ValidationError extends FarameshAPIError {
  override name = "ValidationError";
}

/** 429; `retryAfter` in seconds when the server said. */
export class RateLimitError extends FarameshAPIError {
  override name = "RateLimitError";
  retryAfter: number | undefined;
}

/** 5xx; `retryAfter` in seconds when the server said (a stopping server sends 503 with one). */
export class ServerError extends FarameshAPIError {
  override name = "ServerError";
  retryAfter: number | undefined;
}

type APIErrorClass = new (message: string, options: APIErrorOptions) => FarameshAPIError;

const BY_STATUS: Record<number, APIErrorClass> = {
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  422: ValidationError,
  429: RateLimitError,
};

/** The error class for an HTTP status (the same table as the Python SDK's `exception_class`). */
export function errorClass(statusCode: number): APIErrorClass {
  if (statusCode >= 500) return ServerError;
  const known = BY_STATUS[statusCode];
  if (known) return known;
  return statusCode >= 400 && statusCode < 500 ? ValidationError : FarameshAPIError;
}

function errorObject(body: unknown): Record<string, unknown> | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const error = (body as Record<string, unknown>).error;
  return typeof error === "object" && error !== null ? (error as Record<string, unknown>) : undefined;
}

/** Seconds from a Retry-After header; undefined when absent or not a plain number (an HTTP date). */
export function retryAfterSeconds(value: string | null | undefined): number | undefined {
  if (!value || !/^\s*\d+(\.\d+)?\s*$/.test(value)) return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

/** The typed error for an error answer: its status, its parsed body (if JSON) and its text. */
export function errorFor(statusCode: number, body: unknown, fallbackText = "", retryAfter?: string | null): FarameshAPIError {
  let message = fallbackText || `HTTP ${statusCode}`;
  if (typeof body === "object" && body !== null) {
    const detail = (body as Record<string, unknown>).detail;
    if (typeof detail === "string") message = detail;
  }
  const error = errorObject(body);
  const code = typeof error?.code === "string" ? error.code : undefined;
  const field = typeof error?.field === "string" ? error.field : undefined;
  const Class = errorClass(statusCode);
  const err = new Class(message, { statusCode, code, field, body });
  if (err instanceof RateLimitError || err instanceof ServerError) err.retryAfter = retryAfterSeconds(retryAfter);
  return err;
}
