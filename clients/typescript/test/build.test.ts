// The package as users get it: an ESM and a CommonJS build of the same API with type
// declarations, no runtime dependencies, and the version everywhere the same.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { test } from "node:test";

import * as esm from "@faramesh/sdk";
import * as esmAi from "@faramesh/sdk/ai";
import * as esmAgents from "@faramesh/sdk/openai-agents";

import { PACKAGE } from "./support/paths.js";

const require = createRequire(import.meta.url);
const manifest = JSON.parse(readFileSync(join(PACKAGE, "package.json"), "utf8")) as {
  version: string;
  private?: boolean;
  dependencies?: Record<string, string>;
  exports: Record<string, { import?: { types: string; default: string }; require?: { types: string; default: string } }>;
};

test("require() loads the CommonJS build, with the same names as the ESM build", () => {
  for (const [subpath, esmModule] of [
    ["@faramesh/sdk", esm],
    ["@faramesh/sdk/ai", esmAi],
    ["@faramesh/sdk/openai-agents", esmAgents],
  ] as const) {
    const resolved = require.resolve(subpath);
    assert.match(resolved, /dist[\\/]cjs[\\/]/, subpath);
    const cjs = require(subpath) as Record<string, unknown>;
    assert.deepEqual(Object.keys(cjs).filter((k) => k !== "__esModule").sort(), Object.keys(esmModule).sort(), subpath);
  }
  const cjs = require("@faramesh/sdk") as typeof esm;
  const err = cjs.errorFor(409, { detail: "no", error: { code: "invalid_transition", status: "approved" } });
  assert.ok(err instanceof cjs.ConflictError);
  assert.equal(err.currentStatus, "approved");
  assert.ok(new cjs.ServerUnavailable("x") instanceof cjs.FarameshConnectionError);
});

test("every export has its build and its type declarations", () => {
  for (const [subpath, conditions] of Object.entries(manifest.exports)) {
    if (subpath === "./package.json") continue;
    for (const condition of [conditions.import, conditions.require]) {
      assert.ok(condition, subpath);
      assert.ok(existsSync(join(PACKAGE, condition.default)), condition.default);
      assert.ok(existsSync(join(PACKAGE, condition.types)), condition.types);
    }
  }
});

test("no runtime dependencies, not published, one version", () => {
  assert.deepEqual(manifest.dependencies ?? {}, {});
  assert.equal(manifest.private, true);
  assert.equal(esm.VERSION, manifest.version);
});
