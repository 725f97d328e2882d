// Server-sent events, as `GET /v1/events` sends them: `id:` and `data:` lines, comments
// (keep-alives) and blank lines between events. A small reader of the format
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
// data lines of one event are joined with newlines; other fields are kept as given.

export interface SSEMessage {
  id: string | undefined;
  event: string | undefined;
  data: string;
}

/** Split a byte stream into SSE messages. */
export async function* readSSE(body: AsyncIterable<Uint8Array>): AsyncGenerator<SSEMessage> {
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let data: string[] = [];
  let id: string | undefined;
  let event: string | undefined;
  let sawData = false;

  function* lines(final: boolean): Generator<string> {
    for (;;) {
      const match = /\r\n|\r|\n/.exec(buffer);
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (!match || (match[0] === "\r" && match.index === buffer.length - 1 && !final)) return;
      const line = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      yield line;
    }
  }

  function* take(line: string): Generator<SSEMessage> {
    if (line === "") {
      if (sawData) yield { id, event, data: data.join("\n") };
      data = [];
      event = undefined;
      sawData = false;
      return;
    }
    if (line.startsWith(":")) return; // a comment: keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      data.push(value);
      sawData = true;
    } else if (field === "id") {
      if (!value.includes("\0")) id = value;
    } else if (field === "event") {
      event = value;
    }
  }

  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    for (const line of lines(false)) yield* take(line);
  }
  buffer += decoder.decode();
  for (const line of lines(true)) yield* take(line);
  // An event not closed by a blank line when the stream ends is dropped, as the format says.
}
