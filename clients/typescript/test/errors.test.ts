// The error mapping: each HTTP error the real server gives becomes its typed error, with the
// server's message, code and field; an unreachable or silent server is a connection error.

import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";

import {
  ApprovalTimeout,
  AuthenticationError,
  ConflictError,
  ExecutionGovernorClient,
  FarameshAPIError,
  FarameshClientError,
  FarameshConnectionError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServerError,
  ServerUnavailable,
  ValidationError,
} from "@faramesh/sdk";

import { FarameshServer, freePort, unique } from "./support/server.js";

let server: FarameshServer;
let agent: ExecutionGovernorClient;

before(async () => {
  server = await FarameshServer.start();
  agent = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: await server.createKey("agent") });
});

after(async () => {
  await server?.close();
});

/** Forwards to the real server, except the requests `answer` answers itself. */
function intercepting(answer: (url: URL, init: RequestInit | undefined) => Response | undefined, seen: string[] = []) {
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    seen.push(`${init?.method ?? "GET"} ${url.pathname}`);
    return answer(url, init) ?? fetch(input, init);
  };
}

describe("4xx from the real server", () => {
  test("401: an unknown key", async () => {
    const stranger = new ExecutionGovernorClient({ baseUrl: server.url, apiKey: "fm_not_a_key" });
    const err = await stranger.listActions().catch((e: unknown) => e);
    assert.ok(err instanceof AuthenticationError);
    assert.ok(err instanceof FarameshAPIError && err instanceof FarameshClientError);
    assert.equal(err.statusCode, 401);
    assert.equal(err.code, "unauthorized");
    assert.equal(err.detail, err.message);
  });

  test("403: an agent key may not approve", async () => {
    const action = await agent.submitAction({ tool: "transfer_funds", operation: "send", params: { n: unique("f") } });
    const err = await agent.approve(action.id).catch((e: unknown) => e);
    assert.ok(err instanceof PermissionDeniedError);
    assert.equal(err.statusCode, 403);
    assert.equal(err.code, "forbidden");
    assert.match(err.message, /approver and admin keys/);
  });

  test("404: an unknown action, with the field at fault", async () => {
    const err = await agent.getAction("no-such-action").catch((e: unknown) => e);
    assert.ok(err instanceof NotFoundError);
    assert.equal(err.statusCode, 404);
    assert.equal(err.code, "not_found");
    assert.equal(err.field, "id");
  });

  test("409: a second result report, with the action's current status", async () => {
    const action = await agent.submitAction({ tool: "lookup_order", operation: "read", params: { n: unique("c") } });
    await agent.reportResult(action.id, { success: true });
    const err = await agent.reportResult(action.id, { success: true }).catch((e: unknown) => e);
    assert.ok(err instanceof ConflictError);
    assert.equal(err.statusCode, 409);
    assert.equal(err.code, "invalid_transition");
    assert.equal(err.currentStatus, "succeeded");
  });

  test("422: invalid input names its field", async () => {
    const err = await agent.listActions({ limit: 0 }).catch((e: unknown) => e);
    assert.ok(err instanceof ValidationError);
    assert.equal(err.statusCode, 422);
    assert.equal(err.code, "invalid_input");
    assert.equal(err.field, "limit");
  });

  test("429: over the rate limit, with Retry-After", async () => {
    const limited = await FarameshServer.start({ args: ["--rate-limit", "3/m"] });
    try {
      const client = new ExecutionGovernorClient({ baseUrl: limited.url, apiKey: await limited.createKey("agent") });
      let err: unknown;
      for (let i = 0; i < 10 && err === undefined; i++) {
        err = await client.listActions().then(
          () => undefined,
          (e: unknown) => e,
        );
      }
      assert.ok(err instanceof RateLimitError, `expected a RateLimitError, got ${String(err)}`);
      assert.equal(err.statusCode, 429);
      assert.equal(err.code, "rate_limited");
      assert.ok(typeof err.retryAfter === "number" && err.retryAfter > 0, `retryAfter: ${err.retryAfter}`);
    } finally {
      await limited.close();
    }
  });
});

describe("5xx", () => {
  test("500 in the documented shape is a ServerError with its code", async () => {
    const client = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agent.apiKey!,
      fetch: intercepting(() =>
        Response.json(
          { detail: "boom", error: { code: "internal", message: "boom", field: null, outcome: "unknown" } },
          { status: 500 },
        ),
      ),
    });
    const err = await client.getAction("x").catch((e: unknown) => e);
    assert.ok(err instanceof ServerError);
    assert.equal(err.statusCode, 500);
    assert.equal(err.code, "internal");
    assert.equal(err.message, "boom");
    assert.equal(err.retryAfter, undefined);
  });

  test("503 carries Retry-After; a 502 page that is not JSON keeps its text", async () => {
    const client = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agent.apiKey!,
      fetch: intercepting((url) =>
        url.pathname.endsWith("/a503")
          ? Response.json(
              { detail: "the server is restarting", error: { code: "server_draining", message: "x", field: null } },
              { status: 503, headers: { "Retry-After": "2" } },
            )
          : new Response("<html>Bad Gateway</html>", { status: 502, headers: { "Content-Type": "text/html" } }),
      ),
    });
    const draining = await client.getAction("a503").catch((e: unknown) => e);
    assert.ok(draining instanceof ServerError);
    assert.equal(draining.code, "server_draining");
    assert.equal(draining.retryAfter, 2);
    const gateway = await client.getAction("a502").catch((e: unknown) => e);
    assert.ok(gateway instanceof ServerError);
    assert.equal(gateway.statusCode, 502);
    assert.equal(gateway.message, "<html>Bad Gateway</html>");
    assert.equal(gateway.code, undefined);
  });

  test("a submit is not retried: a repeat without a key could create a second action", async () => {
    const seen: string[] = [];
    const client = new ExecutionGovernorClient({
      baseUrl: server.url,
      apiKey: agent.apiKey!,
      fetch: intercepting(() => Response.json({ detail: "busy" }, { status: 503 }), seen),
    });
    await assert.rejects(client.submitAction({ tool: "lookup_order", operation: "read" }), ServerError);
    assert.deepEqual(seen, ["POST /v1/actions"]);
  });
});

describe("no answer", () => {
  test("an unreachable server is a FarameshConnectionError, never an answer", async () => {
    const port = await freePort();
    const client = new ExecutionGovernorClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: "fm_x" });
    const err = await client.submitAction({ tool: "refund", operation: "process" }).catch((e: unknown) => e);
    assert.ok(err instanceof FarameshConnectionError);
    assert.match((err as Error).message, /cannot reach Faramesh at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
    assert.ok(!(err instanceof ApprovalTimeout), "a plain connection error is not a timeout");
  });

  test("a server that never answers runs into the request timeout", async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const address = silent.address();
    const port = typeof address === "object" && address ? address.port : 0;
    try {
      const client = new ExecutionGovernorClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: "fm_x", timeout: 0.3 });
      const err = await client.getAction("x").catch((e: unknown) => e);
      assert.ok(err instanceof FarameshConnectionError);
      assert.match((err as Error).message, /no answer from Faramesh .* within 0\.3s/);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });

  test("an aborted call throws the signal's reason, not an SDK error", async () => {
    const reason = new Error("the user pressed stop");
    const err = await agent.getAction("x", { signal: AbortSignal.abort(reason) }).catch((e: unknown) => e);
    assert.equal(err, reason);
  });

  test("ServerUnavailable is both an ApprovalTimeout and a FarameshConnectionError", () => {
    const err = new ServerUnavailable("gave up", { actionId: "a1" });
    assert.ok(err instanceof ApprovalTimeout);
    assert.ok(err instanceof FarameshConnectionError);
    assert.ok(err instanceof FarameshClientError);
    assert.equal(err.actionId, "a1");
    assert.ok(!(new ApprovalTimeout("no") instanceof FarameshConnectionError));
    assert.ok(!(new FarameshConnectionError("down") instanceof ServerUnavailable));
  });
});
