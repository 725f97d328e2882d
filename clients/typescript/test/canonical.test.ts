// canonicalJson must give the bytes the server's canonical_json gives (src/faramesh/canonical.py):
// checked against the Python function itself on tricky values and on many random ones.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";

import { canonicalJson, compareCodePoints, NonCanonicalValue, requestHash } from "@faramesh/sdk";

import { type ContractScript, script } from "./support/paths.js";

const { cleanEnv, python } = await script<ContractScript>("contract.mjs");

/** Python's canonical_json and request_hash of each JSON text. */
function pythonCanonical(texts: string[]): Array<{ canonical: string; hash: string }> {
  const program = `
import json, sys
from faramesh.canonical import canonical_json, request_hash
out = []
for text in json.load(sys.stdin):
    value = json.loads(text)
    out.append({"canonical": canonical_json(value).decode("utf-8"),
                "hash": request_hash(agent_id="bot", tool="t", operation="o", params={"v": value}, context={})})
print(json.dumps(out, ensure_ascii=True))
`;
  const stdout = execFileSync(python(), ["-c", program], { input: JSON.stringify(texts), env: cleanEnv(), encoding: "utf8" });
  return JSON.parse(stdout) as Array<{ canonical: string; hash: string }>;
}

const TRICKY = [
  "1.0",
  "-0.0",
  "0",
  "100",
  "1e21",
  "1.5e300",
  "123456789012345680000",
  "0.1",
  "0.30000000000000004",
  "1e-7",
  "1.5e-7",
  "-2.5e-10",
  "0.0001",
  "0.00001",
  "12.50",
  "5e-324",
  "1.7976931348623157e308",
  '"plain"',
  '"quote \\" backslash \\\\ slash /"',
  '"\\n\\r\\t\\b\\f \\u0000 \\u001f \\u007f"',
  '"caf\\u00e9 \\u2603 \\u2028 \\ud83d\\ude00"',
  "[]",
  "{}",
  "[1, [2.0, [3.25e-5]], null, true, false]",
  '{"b": 1, "a": {"d": [], "c": {}}, "A": 2, "_": 3, "": 4}',
  '{"\\uff21": 1, "\\ud835\\udcb3": 2, "z": 3, "\\u00e9": 4, "\\ue000": 5}',
];

test("the same canonical form as the server's, on tricky values", () => {
  const expected = pythonCanonical(TRICKY);
  TRICKY.forEach((text, i) => {
    const value: unknown = JSON.parse(text);
    assert.equal(canonicalJson(value), expected[i]?.canonical, text);
    assert.equal(requestHash({ agentId: "bot", tool: "t", operation: "o", params: { v: value }, context: {} }), expected[i]?.hash, text);
  });
});

// A small seeded generator, so a failure can be reproduced.
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ["a", "Z", "0", " ", '"', "\\", "\n", "\u0001", "é", "ß", "€", "☕", "\uff21", "\ue000", "😀", "𝒳", "\u2028"];

function randomValue(next: () => number, depth: number): unknown {
  const pick = Math.floor(next() * (depth > 2 ? 5 : 7));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return next() < 0.5;
    case 2: {
      const exponent = Math.floor(next() * 80) - 40;
      const sign = next() < 0.5 ? -1 : 1;
      return next() < 0.3 ? Math.floor(next() * 1e6) * sign : sign * next() * 10 ** exponent;
    }
    case 3:
    case 4:
      return Array.from({ length: Math.floor(next() * 6) }, () => ALPHABET[Math.floor(next() * ALPHABET.length)]).join("");
    case 5:
      return Array.from({ length: Math.floor(next() * 4) }, () => randomValue(next, depth + 1));
    default: {
      const out: Record<string, unknown> = {};
      for (let i = Math.floor(next() * 5); i > 0; i--) out[String(randomValue(next, 9))] = randomValue(next, depth + 1);
      return out;
    }
  }
}

test("the same canonical form as the server's, on 500 random values", () => {
  const next = random(20_260_101);
  const texts = Array.from({ length: 500 }, () => JSON.stringify(randomValue(next, 0)));
  const expected = pythonCanonical(texts);
  texts.forEach((text, i) => assert.equal(canonicalJson(JSON.parse(text)), expected[i]?.canonical, text));
});

test("values with no canonical form are refused", () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, new Date(0), () => 1, Symbol("s"), [undefined], "\ud800 lone", new Map()]) {
    assert.throws(() => canonicalJson(bad), NonCanonicalValue);
  }
  assert.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}', "an undefined member is absent, as when sent");
});

test("keys sort by code point, not by UTF-16 unit", () => {
  assert.ok(compareCodePoints("\uff21", "\ud835\udcb3") < 0, "U+FF21 comes before U+1D4B3");
  assert.ok("\uff21" > "\ud835\udcb3", "while JavaScript's own order says otherwise");
  assert.equal(compareCodePoints("ab", "ab"), 0);
  assert.ok(compareCodePoints("a", "ab") < 0);
});
