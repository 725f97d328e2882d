// What the server answers with. Request bodies and parameters come from the server's OpenAPI
// document (src/generated/openapi.ts); answers are not described there, so they are written
// here and checked against the real server by test/contract.test.ts: every field the server
// sends must be declared below, and every always-present one must be sent.

import type { Status } from "./generated/openapi.js";

export type { Status } from "./generated/openapi.js";

/** A JSON value as the server stores it. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** What the policy said at submission. */
export type Decision = "allow" | "deny" | "require_approval";

/** For a held action: how it must be approved and until when. */
export interface Approval {
  /** Distinct approvers needed. */
  quorum: number;
  /** Approver groups allowed to decide (empty: any approver). */
  approvers: string[];
  /** When an undecided action is denied as expired (null: never). */
  expires_at: string | null;
  /** When an approval nobody picked up is cancelled. */
  lapses_at: string | null;
  /** When the submitting agent picked up the approval. */
  picked_up_at: string | null;
  /** Votes that count toward the quorum now. */
  counted?: number;
}

/** The run of a started action (`POST /v1/actions/{id}/start`). */
export interface Execution {
  started_at: string | null;
  /** Without a result or a heartbeat by then, the outcome becomes unknown. */
  lease_expires_at: string | null;
}

/** Whether the submitting agent is waiting on the action now. */
export interface Presence {
  agent_waiting: boolean;
  agent_seen_at: string | null;
}

/** One approver's vote on a held action. */
export interface Vote {
  approver: string;
  approve: boolean;
  reason: string | null;
  at: string | null;
  request_hash: string;
  /** Whether this vote counts toward the quorum now. */
  counts: boolean;
}

/** An action as the API shows it (`GET /v1/actions/{id}`, the answer of every change). */
export interface Action {
  id: string;
  status: Status;
  decision: Decision;
  /** Why: the policy's reason, or a person's when a person denied it. */
  reason: string | null;
  policy_reason: string | null;
  /** The decision in the published faramesh-sdk's terms. */
  outcome: "EXECUTE" | "ABSTAIN" | "HALT" | null;
  reason_code: string;
  risk_level: string | null;
  rule_id: string | null;
  policy_hash: string;
  /** SHA-256 over the canonical JSON of {agent_id, tool, operation, params, context} (see requestHash). */
  request_hash: string;
  tool: string;
  operation: string;
  /** The params as decided: an approver may have changed them. */
  params: JsonObject;
  /** The submitted params when an approver changed them, else null. */
  original_params: JsonObject | null;
  context: JsonObject;
  agent_id: string | null;
  created_at: string;
  updated_at: string;
  decided_by: string | null;
  decision_reason: string | null;
  result: JsonValue;
  error: string | null;
  version: number;
  presence: Presence;
  /**
   * Allowed and approved actions that have not started: the signed permit (a compact JWS)
   * to check with verifyPermit before running. Started, held, denied and finished ones carry none.
   */
  permit?: string;
  permit_expires_at?: string | null;
  /** Started actions: when the run began and when its lease ends without a result or heartbeat. */
  execution?: Execution;
  /** Held actions only. */
  approval?: Approval;
  /** Every vote, where the server lists them (events, approver reads). */
  approvals?: Vote[];
  /** Approver and admin keys only, while pending: the single-use token of the `/approval` form. */
  approval_token?: string;
  /** Submit answers (always there): true when an identical held action was returned instead of a new one. */
  reattached?: boolean;
  /** Only for actions decided beside a shadow policy. */
  shadow_decision?: Decision;
  shadow_rule_id?: string | null;
  shadow_policy_hash?: string | null;
}

/**
 * Every field an Action may carry, and the ones every action carries. test/types.test.ts
 * proves at compile time that these lists match the Action type; test/contract.test.ts
 * checks them against the real server's answers.
 */
export const ACTION_FIELDS = [
  "id",
  "status",
  "decision",
  "reason",
  "policy_reason",
  "outcome",
  "reason_code",
  "risk_level",
  "rule_id",
  "policy_hash",
  "request_hash",
  "tool",
  "operation",
  "params",
  "original_params",
  "context",
  "agent_id",
  "created_at",
  "updated_at",
  "decided_by",
  "decision_reason",
  "result",
  "error",
  "version",
  "presence",
  "permit",
  "permit_expires_at",
  "execution",
  "approval",
  "approvals",
  "approval_token",
  "reattached",
  "shadow_decision",
  "shadow_rule_id",
  "shadow_policy_hash",
] as const;

export const OPTIONAL_ACTION_FIELDS = [
  "permit",
  "permit_expires_at",
  "execution",
  "approval",
  "approvals",
  "approval_token",
  "reattached",
  "shadow_decision",
  "shadow_rule_id",
  "shadow_policy_hash",
] as const;

/** One page of `listActions`. */
export interface ActionPage {
  actions: Action[];
  /** Pass as `cursor` for the next page; null on the last one. */
  next_cursor: string | null;
}

/** One state change from `streamEvents` (`GET /v1/events`). */
export interface ActionEvent {
  /** e.g. `action.created`, `action.approved`, `action.reattached`. */
  type: string;
  /** Pass the last one seen as `lastEventId` to resume. */
  seq: number;
  action_id: string;
  status: Status;
  action: Action;
}

/** One record of an action's audit trail (`getActionEvents`). */
export interface AuditEvent {
  seq: number;
  event: string;
  action_id: string;
  actor: string;
  at: string;
  ts: number;
  data: JsonObject;
  prev_hash: string;
  hash: string;
  [more: string]: unknown;
}

/** The answer of `decide` (a dry run: nothing is recorded). */
export interface DecideResult {
  decision: Decision;
  reason: string | null;
  risk_level: string | null;
  rule_id: string | null;
  policy_hash: string;
  request_hash: string;
  agent_id: string | null;
  [more: string]: unknown;
}
