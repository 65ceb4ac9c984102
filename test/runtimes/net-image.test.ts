/**
 * The airlock-test/net image (scripts/test-images.sh) runs in the bwrap runtime with no network:
 * curl, Node.js 24 and npm start from the host's copies and their libraries, busybox does the rest.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { sandboxLabels, stepScript, type Sandbox } from "../../src/runtimes/index.ts";
import { TEST_IMAGES } from "../helpers/bwrap.ts";

const NET_LAYOUT = join(TEST_IMAGES, "net", "oci");
let root: string;
let skipReason: string | undefined;
let box: Sandbox | undefined;

describe("the airlock-test/net image", () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-net-image-"));
    if (!existsSync(join(NET_LAYOUT, "index.json"))) skipReason = `no airlock-test/net in ${TEST_IMAGES} (run scripts/test-images.sh ${TEST_IMAGES}; it prints why it did not build it)`;
    const target = new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(root, "data"), images: [NET_LAYOUT], dockerHost: join(root, "no-docker.sock"), logger: silentLogger });
    if (!skipReason) {
      const probe = await target.probe();
      if (!probe.usable) skipReason = probe.detail;
    }
    if (skipReason) {
      process.stdout.write(`# SKIP net image: ${skipReason}\n`);
      return;
    }
    const workspace = join(root, "job", "workspace");
    await mkdir(workspace, { recursive: true });
    const jobId = 960_000 + Math.floor(Math.random() * 10_000);
    box = await target.createSandbox(
      { jobId, attempt: 1, executorName: "net-image-test", workspace, scratchDir: join(root, "job"), resources: {}, labels: sandboxLabels("net-image-test", jobId, 1), logger: silentLogger },
      new AbortController().signal,
    );
  });

  after(async () => {
    await box?.destroy().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });

  it("has curl with TLS, Node.js 24 with npm, CA certificates and busybox", async (t) => {
    if (skipReason || !box) return t.skip(skipReason);
    const commands = ["curl --version", "node --version", "npm --version", "sha256sum /bin/busybox", "test -s /etc/ssl/certs/ca-certificates.crt && test -f /etc/resolv.conf && echo certs-ok"];
    const chunks: Buffer[] = [];
    const step = { key: "net-image", image: "airlock-test/net", commands, dir: ".", env: {} };
    const outcome = await box.exec({ step, env: {}, script: stepScript(commands) }, { write: (chunk) => chunks.push(Buffer.from(chunk)) }, AbortSignal.timeout(120_000));
    const output = Buffer.concat(chunks).toString("utf8");
    assert.equal(outcome.exitCode, 0, `${output} ${outcome.message ?? ""}`);
    assert.match(output, /^curl \d+\.\d+\.\d+ .*(OpenSSL|GnuTLS)/m, "curl prints its version and TLS library");
    assert.match(output, /^Protocols: .*\bhttps\b/m);
    assert.match(output, /^Features: .*\bHTTPS-proxy\b/m);
    assert.match(output, /^v24\.\d+\.\d+$/m, "Node.js major 24");
    assert.match(output, /^\d+\.\d+\.\d+$/m, "npm prints its version");
    assert.match(output, /^[0-9a-f]{64} {2}\/bin\/busybox$/m);
    assert.match(output, /^certs-ok$/m);
  });
});
