// How long verifyPermit and the canonical JSON take here (run after `npm run build`):
//   node bench/permit.mjs [rounds]
// Signs a permit shaped like the server's with a key of its own (no server needed), then
// prints the median microseconds per call over `rounds` rounds of 1,000 calls. Prints
// numbers only; nothing here is a pass/fail threshold.
import { generateKeyPairSync, sign } from "node:crypto";

import { canonicalJson, paramsHash, PermitKeys, thumbprint, verifyPermit } from "@faramesh/sdk";

const rounds = Number(process.argv[2] ?? 7);
const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const x = String(publicKey.export({ format: "jwk" }).x);
const kid = thumbprint(x);
const keys = PermitKeys.fromJwks({ keys: [{ kty: "OKP", crv: "Ed25519", x, kid }] });
const params = { amount: 150.5, customer_id: "cus_42", note: "café", items: [1, 2, 3], meta: { source: "chat", tries: 2 } };
const now = Math.floor(Date.now() / 1000);
const claims = {
  iss: "faramesh", action_id: "3f255be3-6be0-480e-8908-b89875a8a1e5", tool: "refund", operation: "process",
  request_hash: "a".repeat(64), params_hash: paramsHash(params), policy_hash: "b".repeat(64), approvers: ["c4e167b9e4bfa7cd"],
  agent_id: "billing-bot", status: "approved", iat: now, exp: now + 300,
};
const b64 = (s) => Buffer.from(s).toString("base64url");
const input = `${b64(JSON.stringify({ alg: "EdDSA", kid, typ: "JWT" }))}.${b64(canonicalJson(claims))}`;
const permit = `${input}.${b64(sign(null, Buffer.from(input), privateKey))}`;
const options = { tool: "refund", operation: "process", params, keys };

async function measure(name, fn) {
  const per = [];
  for (let r = 0; r < rounds; r++) {
    const start = performance.now();
    for (let i = 0; i < 1000; i++) await fn();
    per.push(((performance.now() - start) * 1000) / 1000);
  }
  per.sort((a, b) => a - b);
  console.log(`${name}: ${per[Math.floor(per.length / 2)].toFixed(1)} µs (median of ${rounds} rounds of 1,000)`);
}

console.log(`permit size: ${permit.length} characters`);
await measure("verifyPermit (keys loaded)", () => verifyPermit(permit, options));
await measure("paramsHash of the params", () => paramsHash(params));
await measure("canonicalJson of the claims", () => canonicalJson(claims));
