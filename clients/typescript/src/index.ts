// @faramesh/sdk: the TypeScript client for Faramesh, the execution governor for AI agents.
export { ExecutionGovernorClient, DEFAULT_REQUEST_TIMEOUT, DEFAULT_WAIT, PENDING, WAIT_SLICE } from "./client.js";
export type {
  ApproveInput,
  CallOptions,
  ClientOptions,
  DecideInput,
  DenyInput,
  ListFilters,
  ResultInput,
  StreamOptions,
  SubmitInput,
  WaitOptions,
} from "./client.js";
export { clientKey, clientUrl, DEFAULT_URL } from "./config.js";
export {
  ActionDenied,
  ApprovalTimeout,
  AuthenticationError,
  ConflictError,
  errorClass,
  errorFor,
  FarameshAPIError,
  FarameshClientError,
  FarameshConnectionError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServerError,
  ServerUnavailable,
  ValidationError,
} from "./errors.js";
export {
  actionLabel,
  CANCEL_GRACE,
  DEFAULT_ON_ABANDON,
  DEFAULT_TIMEOUT,
  Gate,
  ON_ABANDON_CHOICES,
  REPORT_RETRY_SECONDS,
  RUNNABLE,
} from "./gate.js";
export type { DecidedCall, GateOptions, Logger, OnAbandon, Outcome, PermitMode, RunOptions } from "./gate.js";
export { govern } from "./govern.js";
export type { Governed, GovernOptions } from "./govern.js";
export { canonicalHash, canonicalJson, compareCodePoints, NonCanonicalValue, requestHash } from "./canonical.js";
export {
  ALG,
  paramsHash,
  PermitActionMismatch,
  PermitArgumentsMismatch,
  PermitError,
  PermitExpired,
  PermitKeys,
  permitKeysOf,
  PermitKeysUnavailable,
  PermitMalformed,
  PermitMismatch,
  PermitOperationMismatch,
  PermitSignatureInvalid,
  PermitToolMismatch,
  PermitUnknownKey,
  readPermit,
  thumbprint,
  verifyAction,
  verifyPermit,
} from "./permit.js";
export type { JWKS, PermitClaims, PermitFailure, VerifyPermitOptions } from "./permit.js";
export { backoff, BACKOFF_BASE, BACKOFF_CAP, retryable, RETRY_STATUSES } from "./retry.js";
export { ERROR_CODES, STATUSES } from "./generated/openapi.js";
export type { ErrorCode, OperationKey, Operations } from "./generated/openapi.js";
export { ACTION_FIELDS, OPTIONAL_ACTION_FIELDS } from "./types.js";
export type {
  Action,
  ActionEvent,
  ActionPage,
  Approval,
  AuditEvent,
  DecideResult,
  Decision,
  Execution,
  JsonObject,
  JsonValue,
  Presence,
  Status,
  Vote,
} from "./types.js";
export { VERSION } from "./version.js";
