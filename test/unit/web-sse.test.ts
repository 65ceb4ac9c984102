/** The web UI's event-stream reader (web/src/sse.ts), fed byte pieces cut anywhere. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { readEvents, type ServerEvent } from "../../web/src/sse.ts";

function streamOf(text: string, pieceSize: number): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + pieceSize));
      at += pieceSize;
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<ServerEvent[]> {
  const events: ServerEvent[] = [];
  for await (const event of readEvents(stream)) events.push(event);
  return events;
}

const BODY = 'event: job\ndata: {"id":1}\n\n: keepalive\n\nevent: log\r\ndata: {"text":"héllo ✓"}\r\n\r\ndata: a\ndata: b\n\nevent: end\ndata:{}\n\n';

describe("readEvents", () => {
  it("parses events however the bytes are cut (UTF-8 split included)", async () => {
    const expected: ServerEvent[] = [
      { event: "job", data: '{"id":1}' },
      { event: "log", data: '{"text":"héllo ✓"}' },
      { event: "message", data: "a\nb" },
      { event: "end", data: "{}" },
    ];
    for (const size of [1, 2, 3, 7, 64, 4096]) assert.deepEqual(await collect(streamOf(BODY, size)), expected, `pieces of ${size}`);
  });

  it("stops when its signal aborts", async () => {
    const controller = new AbortController();
    let canceled = false;
    const endless = new ReadableStream<Uint8Array>({
      pull: (stream) =>
        new Promise<void>((resolve) =>
          setTimeout(() => {
            if (!canceled) stream.enqueue(new TextEncoder().encode("data: x\n\n"));
            resolve();
          }, 5),
        ),
      cancel: () => {
        canceled = true;
      },
    });
    const seen: ServerEvent[] = [];
    for await (const event of readEvents(endless, controller.signal)) {
      seen.push(event);
      if (seen.length === 3) controller.abort();
    }
    assert.equal(seen.length, 3);
    assert.equal(canceled, true, "the body was canceled");
  });
});
