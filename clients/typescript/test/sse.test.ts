// Reading server-sent events as a network can deliver them: split anywhere (even inside a
// UTF-8 character), in any line ending, with comments and multi-line data.

import assert from "node:assert/strict";
import { test } from "node:test";

import { type ActionEvent, ExecutionGovernorClient, FarameshConnectionError } from "@faramesh/sdk";

function streaming(parts: Array<string | Uint8Array>, fail?: Error): typeof fetch {
  return async () => {
    let next = 0;
    const body = new ReadableStream<Uint8Array>({
      // One part per read, so a failure comes after what was sent before it.
      pull(controller) {
        const part = parts[next++];
        if (part !== undefined) controller.enqueue(typeof part === "string" ? new TextEncoder().encode(part) : part);
        else if (fail) controller.error(fail);
        else controller.close();
      },
    });
    return new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream" } });
  };
}

async function collect(client: ExecutionGovernorClient): Promise<ActionEvent[]> {
  const out: ActionEvent[] = [];
  for await (const event of client.streamEvents()) out.push(event);
  return out;
}

test("events split anywhere, in any line ending, with comments and multi-line data", async () => {
  const cafe = new TextEncoder().encode('data: {"type": "caf\u00e9", "seq": 4}\n\n');
  const at = cafe.indexOf(0xc3) + 1; // between the two bytes of é
  const client = new ExecutionGovernorClient({
    baseUrl: "http://faramesh.invalid",
    fetch: streaming([
      ": keep-alive\n\n",
      'id: 1\r\ndata: {"type": "a",',
      ' "seq": 1}\r\n\r',
      '\nid: 2\rdata: {"type":\rdata: "b", "seq": 2}\r\r',
      "event: ignored\ndata\n\n",
      cafe.slice(0, at),
      cafe.slice(at),
      "retry: 1000\n: the server is restarting; reconnect with Last-Event-ID\n\n",
      'data: {"type": "never closed"}',
    ]),
  });
  assert.deepEqual(
    (await collect(client)).map((e) => [e.type, e.seq]),
    [
      ["a", 1],
      ["b", 2],
      ["caf\u00e9", 4],
    ],
  );
});

test("a connection lost in the middle of the stream is a FarameshConnectionError", async () => {
  const client = new ExecutionGovernorClient({
    baseUrl: "http://faramesh.invalid",
    fetch: streaming(['data: {"type": "a", "seq": 1}\n\n'], new TypeError("terminated")),
  });
  const seen: string[] = [];
  const err = await (async () => {
    for await (const event of client.streamEvents()) seen.push(event.type);
  })().catch((e: unknown) => e);
  assert.deepEqual(seen, ["a"]);
  assert.ok(err instanceof FarameshConnectionError);
  assert.match((err as Error).message, /lost the event stream/);
});
