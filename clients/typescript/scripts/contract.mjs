// The server's contract, taken from the Python app itself: its OpenAPI document (without the
// version number, which changes with every release), its error codes and its statuses.
// Used by `npm run schema` (to refresh schema/) and by test/schema.test.ts (to fail when
// schema/ no longer matches the server).

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = resolve(root, "..", "..");

/** The Python that has this repository's server installed: FARAMESH_PYTHON, else the repository's .venv. */
export function python() {
  const chosen = process.env.FARAMESH_PYTHON || join(REPO, ".venv", "bin", "python");
  if (!existsSync(chosen)) {
    throw new Error(
      `no Python with the Faramesh server at ${chosen}: run \`python3 -m venv .venv && .venv/bin/pip install -e ".[test]"\` ` +
        "in the repository root, or set FARAMESH_PYTHON",
    );
  }
  return chosen;
}

const DUMP = `
import json, sys
from faramesh.errors import ERRORS
from faramesh.model import Status
from faramesh.server.app import create_app
spec = create_app().openapi()
spec["info"].pop("version", None)
contract = {"errors": {code.value: status for code, (status, _) in ERRORS.items()}, "statuses": [s.value for s in Status]}
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({"openapi": spec, "contract": contract}, out)
`;

/** Only what the app needs: no FARAMESH_* setting of the caller may change the schema. */
export function cleanEnv(extra = {}) {
  const env = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("FARAMESH_") && value !== undefined) env[name] = value;
  }
  return { ...env, PYTHONUNBUFFERED: "1", ...extra };
}

/** {openapi, contract} as the Python app declares them now. */
export async function serverContract() {
  const { readFileSync } = await import("node:fs");
  const dir = mkdtempSync(join(tmpdir(), "faramesh-schema-"));
  try {
    const file = join(dir, "schema.json");
    execFileSync(python(), ["-c", DUMP, file], { cwd: dir, env: cleanEnv(), stdio: ["ignore", "ignore", "pipe"] });
    return JSON.parse(readFileSync(file, "utf8"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The checked-in form: two-space JSON with a final newline. */
export function stable(value) {
  return `${JSON.stringify(value, null, 2)}\n`;
}
