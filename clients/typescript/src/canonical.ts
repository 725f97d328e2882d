// Canonical JSON, byte for byte the same as the server's (src/faramesh/canonical.py), so a
// client can recompute `request_hash` and check that what was approved is what it sent:
// sorted keys (by code point), no whitespace, non-ASCII kept raw, integral numbers written
// as integers (1.0 -> 1), other numbers positionally without an exponent, NaN and Infinity
// refused.

import { createHash } from "node:crypto";

export class NonCanonicalValue extends TypeError {
  override name = "NonCanonicalValue";
}

// UTF-16 order differs from code point order only between surrogates (D800-DFFF) and
// E000-FFFF; shifting both ranges makes a code unit comparison a code point comparison.
function unit(c: number): number {
  if (c >= 0xd800 && c <= 0xdfff) return c + 0x2000;
  if (c >= 0xe000) return c - 0x800;
  return c;
}

/** Compare two strings by Unicode code point (Python's `sorted` order for str). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return unit(x) - unit(y);
  }
  return a.length - b.length;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function str(value: string): string {
  // Python refuses to encode a lone surrogate as UTF-8, so the server never hashes one.
  if (LONE_SURROGATE.test(value)) throw new NonCanonicalValue("a string holds a lone surrogate, which UTF-8 cannot carry");
  // JSON.stringify escapes exactly what Python's json.dumps(ensure_ascii=False) escapes:
  // the quote, the backslash and control characters below U+0020 (\b \t \n \f \r short, others \u00xx).
  return JSON.stringify(value);
}

/** Digits and exponent of a number's shortest round-trip form, written without an exponent. */
function positional(text: string): string {
  const match = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(text);
  if (!match) return text;
  const [, sign, whole = "", fraction = "", exp = "0"] = match;
  const digits = whole + fraction;
  const point = whole.length + Number(exp); // where the decimal point goes in `digits`
  let out: string;
  if (point <= 0) out = `0.${"0".repeat(-point)}${digits}`;
  else if (point >= digits.length) out = digits + "0".repeat(point - digits.length);
  else out = `${digits.slice(0, point)}.${digits.slice(point)}`;
  if (out.includes(".")) out = out.replace(/0+$/, "").replace(/\.$/, "");
  return sign + out;
}

function num(value: number): string {
  if (!Number.isFinite(value)) throw new NonCanonicalValue("NaN and Infinity have no canonical form");
  if (Number.isInteger(value)) {
    // -0 is 0; beyond 1e21 String() would use an exponent.
    return Math.abs(value) < 1e21 ? String(value === 0 ? 0 : value) : BigInt(value).toString();
  }
  return positional(String(value));
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function encode(value: unknown, out: string[]): void {
  if (value === null) out.push("null");
  else if (value === true) out.push("true");
  else if (value === false) out.push("false");
  else if (typeof value === "string") out.push(str(value));
  else if (typeof value === "number") out.push(num(value));
  else if (typeof value === "bigint") out.push(value.toString());
  else if (Array.isArray(value)) {
    out.push("[");
    value.forEach((item, i) => {
      if (i) out.push(",");
      if (item === undefined) throw new NonCanonicalValue("an array holds undefined, which is not a JSON value");
      encode(item, out);
    });
    out.push("]");
  } else if (typeof value === "object" && isPlainObject(value)) {
    const record = value as Record<string, unknown>;
    // An undefined member is absent, as in JSON.stringify (it is never sent).
    const keys = Object.keys(record).filter((k) => record[k] !== undefined).sort(compareCodePoints);
    out.push("{");
    keys.forEach((k, i) => {
      if (i) out.push(",");
      out.push(str(k), ":");
      encode(record[k], out);
    });
    out.push("}");
  } else {
    const kind = value === undefined ? "undefined" : typeof value === "object" ? value.constructor?.name ?? "object" : typeof value;
    throw new NonCanonicalValue(`${kind} is not a JSON value`);
  }
}

/** The canonical JSON text of a JSON value (encode it as UTF-8 for the bytes the server hashes). */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  encode(value, out);
  return out.join("");
}

/** Hex SHA-256 of the canonical JSON's UTF-8 bytes. */
export function canonicalHash(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value), "utf8").digest("hex");
}

/**
 * The server's `request_hash` for a submission: SHA-256 over the canonical JSON of
 * `{agent_id, tool, operation, params, context}`. `agentId` is the agent the server
 * recorded (the action's `agent_id`).
 */
export function requestHash(request: {
  agentId: string | null | undefined;
  tool: string;
  operation: string;
  params?: unknown;
  context?: unknown;
}): string {
  return canonicalHash({
    agent_id: request.agentId ?? null,
    tool: request.tool,
    operation: request.operation,
    params: request.params ?? {},
    context: request.context ?? {},
  });
}
