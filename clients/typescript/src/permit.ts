// Permits: proof, checked where the tool runs, that the server allowed exactly this call.
// The same checks as the Python SDK (faramesh.permit), on Node's own crypto.
//
// Every `allowed` or `approved` action carries `permit`, a compact JWS signed by the server
// with Ed25519 (`alg: EdDSA`, `kid` in the header). Its claims bind the action id, the tool,
// the operation, the hash of the exact params that may run (after an approver's edit), the
// policy hash, the approvers and an expiry. See docs/permits.md.
//
//   const keys = PermitKeys.fromUrl(`${client.baseUrl}/v1/permits/keys`);   // once
//   const claims = await verifyPermit(action.permit, { tool: "refund", operation: "process", params, keys });
//
// A permit proves what may run; it does not make the run single-use on its own: take the
// one start (`client.start(id)`) after verifying it.

import { createHash, createPublicKey, type KeyObject, verify as verifySignature } from "node:crypto";

import { canonicalHash } from "./canonical.js";
import { FarameshClientError } from "./errors.js";
import type { Action } from "./types.js";

export const ALG = "EdDSA";
export const ISSUER = "faramesh";
/** Characters; a real permit is under 1 KB. */
export const MAX_PERMIT = 16_384;
/** Seconds between fetches of the keys while a permit names a kid they do not hold (after a rotation). */
export const REFETCH_UNKNOWN = 10;
/** Seconds fetched keys are trusted before they are fetched again. */
export const KEYS_MAX_AGE = 300;

// -- errors ------------------------------------------------------------------------------
export type PermitFailure =
  | "malformed"
  | "keys"
  | "unknown_key"
  | "signature"
  | "expired"
  | "action"
  | "tool"
  | "operation"
  | "arguments";

/** The permit does not allow this call; `reason` names what failed. Nothing may run. */
export class PermitError extends FarameshClientError {
  override name = "PermitError";
  readonly reason: PermitFailure = "malformed";
}

/** Not a Faramesh permit: not a compact JWS, another algorithm, or claims missing. */
export class PermitMalformed extends PermitError {
  override name = "PermitMalformed";
  override readonly reason: PermitFailure = "malformed";
}

/** The public keys could not be loaded (unreachable URL, bad JWKS). */
export class PermitKeysUnavailable extends PermitError {
  override name = "PermitKeysUnavailable";
  override readonly reason: PermitFailure = "keys";
}

/** The signature does not verify: the permit was altered or not made by this server. */
export class PermitSignatureInvalid extends PermitError {
  override name = "PermitSignatureInvalid";
  override readonly reason: PermitFailure = "signature";
}

/** The permit names a signing key (`kid`) the given keys do not hold. */
export class PermitUnknownKey extends PermitSignatureInvalid {
  override name = "PermitUnknownKey";
  override readonly reason: PermitFailure = "unknown_key";
}

/** The permit's `exp` has passed; read the action again for a fresh one. */
export class PermitExpired extends PermitError {
  override name = "PermitExpired";
  override readonly reason: PermitFailure = "expired";
  /** The permit's `exp`, in seconds since the epoch. */
  readonly expiredAt: number;

  constructor(message: string, expiredAt: number) {
    super(message);
    this.expiredAt = expiredAt;
  }
}

/** The permit is valid but for another call: `field` names what differs. */
export class PermitMismatch extends PermitError {
  override name = "PermitMismatch";
  readonly field: string = "";
  /** What the permit allows. */
  readonly expected: unknown;
  /** What the caller is about to run. */
  readonly actual: unknown;

  constructor(message: string, expected: unknown, actual: unknown) {
    super(message);
    this.expected = expected;
    this.actual = actual;
  }
}

export class PermitActionMismatch extends PermitMismatch {
  override name = "PermitActionMismatch";
  override readonly reason: PermitFailure = "action";
  override readonly field = "action";
}

export class PermitToolMismatch extends PermitMismatch {
  override name = "PermitToolMismatch";
  override readonly reason: PermitFailure = "tool";
  override readonly field = "tool";
}

export class PermitOperationMismatch extends PermitMismatch {
  override name = "PermitOperationMismatch";
  override readonly reason: PermitFailure = "operation";
  override readonly field = "operation";
}

/** The params differ from those the permit covers (as submitted, or as an approver edited them). */
export class PermitArgumentsMismatch extends PermitMismatch {
  override name = "PermitArgumentsMismatch";
  override readonly reason: PermitFailure = "arguments";
  override readonly field = "arguments";
}

// -- the claims ----------------------------------------------------------------------------
/** What a permit allows: one run of `tool`/`operation` with the params hashed as `paramsHash`. */
export interface PermitClaims {
  actionId: string;
  tool: string;
  operation: string;
  /** The action's request hash (agent, tool, operation, params, context). */
  requestHash: string;
  /** SHA-256 of the canonical JSON of the params that may run. */
  paramsHash: string;
  policyHash: string;
  /** Key ids whose approvals counted; empty when allowed outright. */
  approvers: string[];
  agentId: string;
  /** "allowed" or "approved". */
  status: string;
  /** Seconds since the epoch. */
  issuedAt: number;
  expiresAt: number;
  kid: string;
}

const STRING_CLAIMS = {
  actionId: "action_id",
  tool: "tool",
  operation: "operation",
  requestHash: "request_hash",
  paramsHash: "params_hash",
  policyHash: "policy_hash",
  agentId: "agent_id",
  status: "status",
} as const;

function claimsOf(payload: Record<string, unknown>, kid: string): PermitClaims {
  for (const claim of [...Object.values(STRING_CLAIMS), "approvers", "iat", "exp"]) {
    if (!(claim in payload)) throw new PermitMalformed(`the permit has no '${claim}' claim`);
  }
  if (payload.iss !== ISSUER) {
    throw new PermitMalformed(`the permit was not issued by ${ISSUER} (iss is ${JSON.stringify(payload.iss ?? null)})`);
  }
  const strings = {} as Record<keyof typeof STRING_CLAIMS, string>;
  for (const [name, claim] of Object.entries(STRING_CLAIMS) as Array<[keyof typeof STRING_CLAIMS, string]>) {
    const value = payload[claim];
    if (typeof value !== "string") throw new PermitMalformed("the permit's claims are not all strings where strings belong");
    strings[name] = value;
  }
  const approvers = payload.approvers;
  if (!Array.isArray(approvers) || !approvers.every((a) => typeof a === "string")) {
    throw new PermitMalformed("the permit's approvers claim is not a list of key ids");
  }
  for (const claim of ["iat", "exp"]) {
    if (!Number.isInteger(payload[claim])) throw new PermitMalformed(`the permit's ${claim} claim is not an integer time`);
  }
  return { ...strings, approvers: approvers as string[], issuedAt: payload.iat as number, expiresAt: payload.exp as number, kid };
}

function b64url(part: string): Buffer {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw new PermitMalformed("the permit's parts are not base64url");
  return Buffer.from(part, "base64url");
}

function jsonObject(bytes: Buffer): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new PermitMalformed("the permit's header or claims are not base64url JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new PermitMalformed("the permit's header and claims must be JSON objects");
  }
  return value as Record<string, unknown>;
}

interface Split {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  kid: string;
  signingInput: Buffer;
  signature: Buffer;
}

function split(permit: unknown): Split {
  if (typeof permit !== "string" || !permit) {
    throw new PermitMalformed("the permit must be a non-empty string (the action's `permit` field)");
  }
  if (permit.length > MAX_PERMIT) throw new PermitMalformed(`the permit is longer than ${MAX_PERMIT} characters`);
  const parts = permit.split(".");
  if (parts.length !== 3) throw new PermitMalformed("the permit is not a compact JWS (three dot-separated parts)");
  const [head = "", body = "", sig = ""] = parts;
  const header = jsonObject(b64url(head));
  const payload = jsonObject(b64url(body));
  if (header.alg !== ALG) throw new PermitMalformed(`the permit must be signed with ${ALG} (alg is ${JSON.stringify(header.alg ?? null)})`);
  if (typeof header.kid !== "string") throw new PermitMalformed("the permit's header names no signing key (kid)");
  return { header, payload, kid: header.kid, signingInput: Buffer.from(`${head}.${body}`, "ascii"), signature: b64url(sig) };
}

/**
 * The claims of a permit WITHOUT checking its signature or expiry: for display, never to
 * decide whether a call may run (use verifyPermit).
 */
export function readPermit(permit: string): PermitClaims {
  const { payload, kid } = split(permit);
  return claimsOf(payload, kid);
}

/** SHA-256 of the canonical JSON of `params`: what a permit binds the arguments with. */
export function paramsHash(params: unknown): string {
  return canonicalHash(params);
}

// -- keys ----------------------------------------------------------------------------------
/** A JWKS as `GET /v1/permits/keys` answers it (or one JWK). */
export type JWKS = { keys: Array<Record<string, unknown>> } | Record<string, unknown>;

/** The RFC 7638 thumbprint of an Ed25519 JWK: how the server names its keys. */
export function thumbprint(x: string): string {
  return createHash("sha256").update(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`).digest("base64url");
}

function importKeys(jwks: JWKS): Map<string, KeyObject> {
  const entries = "keys" in jwks ? (jwks as { keys: unknown }).keys : [jwks];
  if (!Array.isArray(entries) || entries.length === 0) throw new PermitKeysUnavailable("the JWKS holds no keys");
  const keys = new Map<string, KeyObject>();
  for (const entry of entries as Array<Record<string, unknown>>) {
    if (typeof entry !== "object" || entry === null || entry.kty !== "OKP" || entry.crv !== "Ed25519") continue;
    if (typeof entry.x !== "string") throw new PermitKeysUnavailable("a key in the JWKS has no public part (x)");
    let key: KeyObject;
    try {
      // Only the public parts: a JWK that also carries `d` must not become a private key here.
      key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: entry.x }, format: "jwk" });
    } catch (err) {
      throw new PermitKeysUnavailable(`a key in the JWKS cannot be read: ${(err as Error).message}`);
    }
    keys.set(typeof entry.kid === "string" && entry.kid ? entry.kid : thumbprint(entry.x), key);
  }
  if (keys.size === 0) throw new PermitKeysUnavailable("the JWKS holds no Ed25519 key");
  return keys;
}

/**
 * Public keys to verify permits with, by kid: from a JWKS, or loaded from the server (its
 * `/v1/permits/keys` URL, or any loader) when first needed, again when a permit names a kid
 * they do not hold (at most every REFETCH_UNKNOWN seconds: after a rotation) and after
 * KEYS_MAX_AGE seconds. Build it once and reuse it.
 */
export class PermitKeys {
  #keys = new Map<string, KeyObject>();
  #load: (() => Promise<JWKS>) | undefined;
  #fetchedAt: number | undefined;
  #loading: Promise<void> | undefined;

  private constructor(load?: () => Promise<JWKS>) {
    this.#load = load;
  }

  /** Fixed keys: a JWKS (`{keys: [...]}`) or one public JWK. */
  static fromJwks(jwks: JWKS): PermitKeys {
    const keys = new PermitKeys();
    keys.#keys = importKeys(jwks);
    return keys;
  }

  /** The server's JWKS URL (e.g. https://faramesh.internal/v1/permits/keys), fetched when needed. */
  static fromUrl(url: string, options: { timeout?: number; fetch?: typeof globalThis.fetch } = {}): PermitKeys {
    const fetcher = options.fetch ?? globalThis.fetch;
    const seconds = options.timeout ?? 5;
    return PermitKeys.fromLoader(async () => {
      let response: Response;
      try {
        response = await fetcher(url, { signal: AbortSignal.timeout(seconds * 1000), redirect: "error" });
      } catch (err) {
        throw new PermitKeysUnavailable(`cannot fetch the permit keys from ${url}: ${(err as Error).message}`);
      }
      if (!response.ok) throw new PermitKeysUnavailable(`cannot fetch the permit keys from ${url}: HTTP ${response.status}`);
      try {
        return (await response.json()) as JWKS;
      } catch {
        throw new PermitKeysUnavailable(`${url} did not answer with a JWKS`);
      }
    });
  }

  /** Keys from any source, e.g. `() => client.permitKeys()`. */
  static fromLoader(load: () => Promise<JWKS>): PermitKeys {
    return new PermitKeys(load);
  }

  kids(): string[] {
    return [...this.#keys.keys()].sort();
  }

  #due(missing: boolean): boolean {
    if (this.#fetchedAt === undefined) return true;
    const age = (performance.now() - this.#fetchedAt) / 1000;
    return age >= KEYS_MAX_AGE || (missing && age >= REFETCH_UNKNOWN);
  }

  async #fetch(): Promise<void> {
    // One fetch at a time: concurrent verifications share it.
    this.#loading ??= (async () => {
      try {
        let jwks: JWKS;
        try {
          jwks = await this.#load!();
        } catch (err) {
          if (err instanceof PermitError) throw err;
          throw new PermitKeysUnavailable(`cannot load the permit keys: ${(err as Error).message}`);
        }
        if (typeof jwks !== "object" || jwks === null) throw new PermitKeysUnavailable("the permit keys are not a JWKS");
        this.#keys = importKeys(jwks);
        this.#fetchedAt = performance.now();
      } finally {
        this.#loading = undefined;
      }
    })();
    return this.#loading;
  }

  /**
   * Fetch the keys again now (after a rotation); false for fixed keys, which cannot change.
   * A failed fetch keeps the keys held before and throws PermitKeysUnavailable.
   */
  async refresh(): Promise<boolean> {
    if (!this.#load) return false;
    await this.#fetch();
    return true;
  }

  /** The public key named `kid`; PermitUnknownKey if there is none. */
  async keyFor(kid: string): Promise<KeyObject> {
    if (this.#load && this.#due(!this.#keys.has(kid))) {
      try {
        await this.#fetch();
      } catch (err) {
        // Keys fetched before still verify what the server signed with them.
        if (!this.#keys.has(kid)) throw err;
      }
    }
    const key = this.#keys.get(kid);
    if (!key) {
      const known = this.#keys.size ? ` (it publishes ${this.kids().join(", ")})` : "";
      throw new PermitUnknownKey(`the permit was signed with key '${kid}', which is not among the server's published keys${known}`);
    }
    return key;
  }
}

/** A PermitKeys for what verifyPermit's `keys` takes: itself, a JWKS, or a key URL. */
export function permitKeysOf(keys: PermitKeys | JWKS | string): PermitKeys {
  if (keys instanceof PermitKeys) return keys;
  if (typeof keys === "string") return PermitKeys.fromUrl(keys);
  return PermitKeys.fromJwks(keys);
}

// -- verification --------------------------------------------------------------------------
export interface VerifyPermitOptions {
  tool: string;
  operation: string;
  /** The params about to run. */
  params: unknown;
  /** A PermitKeys (build one once and reuse it), a JWKS, or the server's `/v1/permits/keys` URL. */
  keys: PermitKeys | JWKS | string;
  /** When given, must be the permit's action. */
  actionId?: string;
  /** Seconds since the epoch to judge expiry at (default: now). */
  now?: number;
  /** Allowed clock skew in seconds (default 0). */
  leeway?: number;
}

/**
 * Check, offline, that `permit` allows running `tool`/`operation` with `params` now. Returns
 * the claims; throws a PermitError subclass naming what failed: PermitMalformed,
 * PermitKeysUnavailable, PermitUnknownKey, PermitSignatureInvalid, PermitExpired,
 * PermitActionMismatch, PermitToolMismatch, PermitOperationMismatch or PermitArgumentsMismatch.
 */
export async function verifyPermit(permit: unknown, options: VerifyPermitOptions): Promise<PermitClaims> {
  const parts = split(permit);
  const key = await permitKeysOf(options.keys).keyFor(parts.kid);
  let valid = false;
  try {
    valid = verifySignature(null, parts.signingInput, key, parts.signature);
  } catch {
    valid = false;
  }
  if (!valid) throw new PermitSignatureInvalid("the permit's signature does not verify: it was altered or not signed by this server");
  const claims = claimsOf(parts.payload, parts.kid);
  const at = options.now ?? Date.now() / 1000;
  if (at > claims.expiresAt + (options.leeway ?? 0)) {
    throw new PermitExpired(
      `the permit expired ${Math.round(at - claims.expiresAt)}s ago; read the action again for a fresh one`,
      claims.expiresAt,
    );
  }
  if (options.actionId !== undefined && options.actionId !== claims.actionId) {
    throw new PermitActionMismatch(`the permit is for action ${claims.actionId}, not ${options.actionId}`, claims.actionId, options.actionId);
  }
  sameName(claims.tool, options.tool, PermitToolMismatch, "tool");
  sameName(claims.operation, options.operation, PermitOperationMismatch, "operation");
  let actual: string;
  try {
    actual = paramsHash(options.params);
  } catch (err) {
    throw new PermitArgumentsMismatch(
      `the arguments cannot be compared with the permit: they are not plain JSON (${(err as Error).message})`,
      claims.paramsHash,
      null,
    );
  }
  if (actual !== claims.paramsHash) {
    throw new PermitArgumentsMismatch(
      `the arguments differ from those the permit allows (params hash ${actual.slice(0, 12)}… against ` +
        `${claims.paramsHash.slice(0, 12)}…); run the params of the allowed or approved action, which an approver may have edited`,
      claims.paramsHash,
      actual,
    );
  }
  return claims;
}

/**
 * verifyPermit for an action as the API returns it: its permit must allow this call for this
 * very action. An action without a permit (denied, held, started, or from a server without
 * permits) throws PermitMalformed: nothing runs.
 */
export async function verifyAction(action: Action, options: Omit<VerifyPermitOptions, "actionId">): Promise<PermitClaims> {
  if (action.permit === undefined || action.permit === null) {
    throw new PermitMalformed(`action ${action.id} carries no permit (status '${action.status}'): it may not run now`);
  }
  return verifyPermit(action.permit, { ...options, actionId: String(action.id) });
}

function sameName(
  allowed: string,
  given: unknown,
  Mismatch: new (message: string, expected: unknown, actual: unknown) => PermitMismatch,
  what: string,
): void {
  // The server stores names NFKC-normalised; compare the caller's the same way.
  const normalized = typeof given === "string" ? given.normalize("NFKC") : given;
  if (normalized !== allowed) throw new Mismatch(`the permit is for ${what} '${allowed}', not '${String(given)}'`, allowed, given);
}
