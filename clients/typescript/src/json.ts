// The JSON a governed call sends and reports. Params must be plain JSON, checked before
// anything is submitted, so the values the policy judges are the values the code runs with.

import { inspect } from "node:util";

import type { JsonObject, JsonValue } from "./types.js";

const MAX_ERROR_TEXT = 10_000;

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function check(value: unknown, path: string, where: string): JsonValue {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`${where}: ${path} is ${value}, which JSON cannot carry`);
    return value;
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => {
      if (item === undefined) throw new TypeError(`${where}: ${path}[${i}] is undefined, which JSON cannot carry`);
      return check(item, `${path}[${i}]`, where);
    });
  }
  if (typeof value === "object" && isPlainObject(value)) {
    const out: JsonObject = {};
    for (const [key, item] of Object.entries(value)) {
      if (item === undefined) continue; // absent, as JSON.stringify would send it
      out[key] = check(item, `${path}.${key}`, where);
    }
    return out;
  }
  const kind = value === undefined ? "undefined" : typeof value === "object" ? (value.constructor?.name ?? "object") : typeof value;
  throw new TypeError(
    `${where}: ${path} is a ${kind}, which is not plain JSON; pass strings, finite numbers, booleans, null, ` +
      "arrays or plain objects (convert it before the call)",
  );
}

/** A plain-JSON copy of `value` (undefined members dropped); a TypeError naming the culprit otherwise. */
export function jsonParams(value: unknown, where: string): JsonObject {
  if (typeof value !== "object" || value === null || Array.isArray(value) || !isPlainObject(value)) {
    throw new TypeError(`${where}: params must be a plain object, not ${Array.isArray(value) ? "an array" : typeof value}`);
  }
  return check(value, "params", where) as JsonObject;
}

/** A JSON form of a returned value for the result report (best effort, never throws). */
export function jsonable(value: unknown): JsonValue {
  if (value === undefined) return null;
  try {
    const text = JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
    return text === undefined ? inspect(value) : (JSON.parse(text) as JsonValue);
  } catch {
    // A result that cannot be shown must not hide that the call succeeded.
    return inspect(value, { depth: 2 });
  }
}

/** `Name: message` of a thrown value, for the failure report. */
export function describeError(err: unknown): string {
  let text: string;
  if (err instanceof Error) text = err.message ? `${err.name}: ${err.message}` : err.name;
  else text = `thrown: ${inspect(err, { depth: 2 })}`;
  return text.slice(0, MAX_ERROR_TEXT);
}
