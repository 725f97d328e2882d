// The types cannot drift from the server: schema/ must equal what the Python app declares now,
// and src/generated/openapi.ts must equal what the generator makes of schema/. The client
// builds every request through the generated types, so a change the server makes shows up
// here first and then as compile errors in the client.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { ERROR_CODES, errorFor } from "@faramesh/sdk";

import { type ContractScript, type GenerateScript, PACKAGE, script } from "./support/paths.js";

const contract = await script<ContractScript>("contract.mjs");
const generator = await script<GenerateScript>("generate-types.mjs");

const FIX = "the server's API changed: run `npm run schema` in clients/typescript, then fix what no longer compiles";

test("schema/openapi.json and schema/contract.json are what the Python app declares", async () => {
  const live = await contract.serverContract();
  assert.equal(readFileSync(join(PACKAGE, "schema", "openapi.json"), "utf8"), contract.stable(live.openapi), FIX);
  assert.equal(readFileSync(join(PACKAGE, "schema", "contract.json"), "utf8"), contract.stable(live.contract), FIX);
});

test("src/generated/openapi.ts is generated from schema/", () => {
  const { openapi, contract: facts } = generator.readSchema();
  assert.equal(readFileSync(join(PACKAGE, "src", "generated", "openapi.ts"), "utf8"), generator.generate(openapi, facts), FIX);
});

test("a change to the schema changes the generated types", () => {
  const { openapi, contract: facts } = generator.readSchema();
  const changed = structuredClone(openapi) as {
    components: { schemas: Record<string, { properties: Record<string, unknown>; required?: string[] }> };
  };
  const submit = changed.components.schemas.SubmitBody!;
  submit.properties.priority = { type: "integer", description: "a new field" };
  submit.required = [...(submit.required ?? []), "priority"];
  const text = generator.generate(changed, facts);
  assert.notEqual(text, generator.generate(openapi, facts));
  assert.match(text, /\/\*\* a new field \*\/\n {2}priority: number;/);
});

test("the generator's JSON Schema subset", () => {
  assert.equal(generator.tsType({ anyOf: [{ type: "string" }, { type: "null" }] }), "string | null");
  assert.equal(generator.tsType({ type: "array", items: { type: "string" } }), "string[]");
  assert.equal(generator.tsType({ type: "array", items: { anyOf: [{ type: "integer" }, { type: "null" }] } }), "Array<number | null>");
  assert.equal(generator.tsType({ type: "string", enum: ["agent", "admin"] }), '"agent" | "admin"');
  assert.equal(generator.tsType({ type: "object", additionalProperties: true }), "Record<string, unknown>");
  assert.equal(generator.tsType({ title: "Result" }), "unknown");
  assert.equal(generator.tsType({ $ref: "#/components/schemas/SubmitBody" }), "SubmitBody");
  assert.throws(() => generator.tsType({ type: "quantum" }), /unsupported schema/);
});

test("every error code maps to the same error class as in the Python SDK", () => {
  const python = execFileSync(
    contract.python(),
    [
      "-c",
      "import json; from faramesh.sdk.errors import EXCEPTION_FOR_CODE as E; print(json.dumps({c.value: k.__name__ for c, k in E.items()}))",
    ],
    { env: contract.cleanEnv(), encoding: "utf8" },
  );
  const expected = JSON.parse(python) as Record<string, string>;
  assert.deepEqual(Object.keys(ERROR_CODES).sort(), Object.keys(expected).sort());
  for (const [code, status] of Object.entries(ERROR_CODES)) {
    const err = errorFor(status, { detail: `a ${code}`, error: { code, message: "m", field: null } });
    assert.equal(err.name, expected[code], `${code} (${status})`);
    assert.equal(err.code, code);
    assert.equal(err.statusCode, status);
  }
});
