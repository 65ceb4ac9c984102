/** The docker runtime's pure parts: the attach-stream demultiplexer and image references. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { Demuxer, type StreamName } from "../../src/runtimes/docker/demux.ts";
import { parseImageRef, registryAuthHeader } from "../../src/runtimes/docker/image-ref.ts";

function frame(stream: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

describe("Demuxer", () => {
  it("splits frames into stdout and stderr whatever the cut points, bytes intact", () => {
    const frames: { stream: StreamName; payload: Buffer }[] = [];
    for (let index = 0; index < 200; index += 1) {
      frames.push({ stream: index % 3 === 0 ? "stderr" : "stdout", payload: randomBytes(index * 37 % 5000) });
    }
    const wire = Buffer.concat(frames.map((item) => frame(item.stream === "stderr" ? 2 : 1, item.payload)));
    for (const cut of [1, 3, 7, 8, 9, 4096, wire.length]) {
      const got = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
      const demuxer = new Demuxer((chunk, stream) => got[stream].push(Buffer.from(chunk)));
      for (let offset = 0; offset < wire.length; offset += cut) demuxer.push(wire.subarray(offset, offset + cut));
      assert.ok(Buffer.concat(got.stdout).equals(Buffer.concat(frames.filter((item) => item.stream === "stdout").map((item) => item.payload))), `stdout, cut ${cut}`);
      assert.ok(Buffer.concat(got.stderr).equals(Buffer.concat(frames.filter((item) => item.stream === "stderr").map((item) => item.payload))), `stderr, cut ${cut}`);
    }
  });

  it("hands on payload bytes as they arrive, before the frame is complete", () => {
    const seen: string[] = [];
    const demuxer = new Demuxer((chunk) => seen.push(chunk.toString()));
    const wire = frame(1, Buffer.from("hello world"));
    demuxer.push(wire.subarray(0, 13));
    assert.deepEqual(seen, ["hello"]);
  });
});

describe("image references", () => {
  it("splits repository, tag or digest, and registry", () => {
    assert.deepEqual(parseImageRef("alpine"), { repository: "alpine", tag: "latest", registry: "docker.io" });
    assert.deepEqual(parseImageRef("airlock-test/busybox:1.2"), { repository: "airlock-test/busybox", tag: "1.2", registry: "docker.io" });
    assert.deepEqual(parseImageRef("ghcr.io/acme/tool:v1"), { repository: "ghcr.io/acme/tool", tag: "v1", registry: "ghcr.io" });
    assert.deepEqual(parseImageRef("localhost:5000/tool"), { repository: "localhost:5000/tool", tag: "latest", registry: "localhost:5000" });
    assert.deepEqual(parseImageRef("127.0.0.1:9/a/b@sha256:abc"), { repository: "127.0.0.1:9/a/b", tag: "sha256:abc", registry: "127.0.0.1:9" });
  });

  it("uses the job's credentials for the image's registry only", () => {
    const auth = { "ghcr.io": { username: "u", password: "p" }, "https://index.docker.io/v1/": { username: "hub", password: "secret" } };
    const decode = (header: string | undefined) => (header ? (JSON.parse(Buffer.from(header, "base64url").toString()) as Record<string, string>) : undefined);
    assert.deepEqual(decode(registryAuthHeader(parseImageRef("ghcr.io/acme/tool"), auth)), { username: "u", password: "p", serveraddress: "ghcr.io" });
    assert.equal(decode(registryAuthHeader(parseImageRef("node:24"), auth))?.username, "hub");
    assert.equal(registryAuthHeader(parseImageRef("quay.io/x/y"), auth), undefined, "no credentials leak to another registry");
    assert.equal(registryAuthHeader(parseImageRef("alpine"), undefined), undefined);
  });
});
