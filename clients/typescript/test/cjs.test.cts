// A CommonJS consumer: `require` with the CommonJS type declarations (compiled as CommonJS).
import assert = require("node:assert/strict");
import { test } from "node:test";
import sdk = require("@faramesh/sdk");
import agents = require("@faramesh/sdk/openai-agents");

test("a CommonJS program uses the client, the errors and the adapters", () => {
  const client = new sdk.ExecutionGovernorClient({ baseUrl: "http://127.0.0.1:9/", apiKey: "fm_x", timeout: 2 });
  assert.equal(client.baseUrl, "http://127.0.0.1:9");
  const denied: sdk.FarameshAPIError = sdk.errorFor(403, { detail: "no" });
  assert.ok(denied instanceof sdk.PermissionDeniedError);
  assert.equal(agents.refusal("x"), "Not permitted by Faramesh: x. The tool was not run.");
  assert.equal(sdk.canonicalJson({ b: 1.0, a: [0.5] }), '{"a":[0.5],"b":1}');
});
