/** The gateway's reading of upstream HTTP responses: heads, framing, chunked bodies split anywhere. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ChunkedDecoder, parseResponseHead } from "../../src/egress/http-response.ts";

describe("parseResponseHead", () => {
  it("reads status, reason and headers, dropping hop-by-hop ones and those Connection names", () => {
    const head = parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close, X-Hop\r\nX-Hop: a\r\nKeep-Alive: timeout=5\r\nX-Kept:  b \r\nSet-Cookie: a=1\r\nSet-Cookie: b=2", "GET");
    assert.equal(head.status, 200);
    assert.equal(head.reason, "OK");
    assert.deepEqual(head.framing, { kind: "length", length: 5 });
    assert.deepEqual(head.headers, ["Content-Length", "5", "X-Kept", "b", "Set-Cookie", "a=1", "Set-Cookie", "b=2"]);
  });

  it("chooses the body's framing as RFC 9112 says", () => {
    assert.deepEqual(parseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9", "GET").framing, { kind: "chunked" });
    assert.deepEqual(parseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9", "GET").headers, []);
    assert.deepEqual(parseResponseHead("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", "GET").framing, { kind: "close" });
    assert.deepEqual(parseResponseHead("HTTP/1.0 200 OK", "GET").framing, { kind: "close" });
    assert.deepEqual(parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 7", "HEAD").framing, { kind: "none" });
    assert.deepEqual(parseResponseHead("HTTP/1.1 204 No Content", "GET").framing, { kind: "none" });
    assert.deepEqual(parseResponseHead("HTTP/1.1 304 Not Modified\r\nContent-Length: 7", "GET").framing, { kind: "none" });
    assert.deepEqual(parseResponseHead("HTTP/1.1 200\r\nContent-Length: 3, 3", "GET").framing, { kind: "length", length: 3 });
    assert.equal(parseResponseHead("HTTP/1.1 200", "GET").reason, "");
  });

  for (const bad of ["HTTP/2 200 OK", "ICY 200 OK", "HTTP/1.1 99 Low", "HTTP/1.1 200 OK\r\n Folded: x", "HTTP/1.1 200 OK\r\nNo colon", "HTTP/1.1 200 OK\r\nBad Name: x", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4", "HTTP/1.1 200 OK\r\nContent-Length: -1"]) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => parseResponseHead(bad, "GET")));
  }
});

describe("ChunkedDecoder", () => {
  const body = "4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n";

  it("decodes a body fed in one piece", () => {
    const out: Buffer[] = [];
    assert.equal(new ChunkedDecoder().feed(Buffer.from(body), out), true);
    assert.equal(Buffer.concat(out).toString(), "Wikipedia in\r\n\r\nchunks.");
  });

  it("decodes the same body split at every position", () => {
    for (let cut = 1; cut < body.length; cut += 1) {
      const decoder = new ChunkedDecoder();
      const out: Buffer[] = [];
      assert.equal(decoder.feed(Buffer.from(body.slice(0, cut)), out), false, `cut at ${cut}`);
      assert.equal(decoder.feed(Buffer.from(body.slice(cut)), out), true, `cut at ${cut}`);
      assert.equal(Buffer.concat(out).toString(), "Wikipedia in\r\n\r\nchunks.");
    }
  });

  it("is not done before the last chunk and its trailer section", () => {
    assert.equal(new ChunkedDecoder().feed(Buffer.from("3\r\nabc\r\n0\r\n"), []), false);
  });

  for (const bad of ["x\r\n", "3\r\nabcd\r\n", "1234567890abc\r\n", `${"1".repeat(5000)}`]) {
    it(`refuses ${JSON.stringify(bad.slice(0, 20))}`, () => assert.throws(() => new ChunkedDecoder().feed(Buffer.from(bad), [])));
  }
});
