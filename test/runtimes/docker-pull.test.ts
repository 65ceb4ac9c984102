/**
 * Pulling: a step whose image is not on the host makes dockerd pull it, with the job's registry
 * credentials for that registry only. There is no registry on these machines, so the test serves
 * the OCI layout of the busybox test image over the registry HTTP API on loopback (dockerd treats
 * 127.0.0.0/8 registries as plain HTTP), behind Basic auth. Tries to break: pulling without or
 * with wrong credentials must fail naming the image; the password never reaches the step's log.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { SandboxError } from "../../src/protocol/index.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { sandboxLabels, stepScript } from "../../src/runtimes/index.ts";
import { ROOT } from "../helpers/cluster.ts";
import { dockerUnavailable, SOCKET } from "./docker-target.ts";

const LAYOUT = join(process.env.AIRLOCK_TEST_IMAGES ?? join(ROOT, ".test-images"), "busybox", "oci");
const USER = "puller";
const PASSWORD = `pw-${randomBytes(8).toString("hex")}`;

const runtime = new DockerRuntime({ host: SOCKET, logger: silentLogger });
const skip = (await dockerUnavailable(runtime)) ?? (existsSync(join(LAYOUT, "index.json")) ? undefined : `no OCI layout at ${LAYOUT} (scripts/test-images.sh builds it)`);
if (skip) process.stdout.write(`# SKIP docker pull tests: ${skip}\n`);

/** Registry v2 API, read-only, one repository, Basic auth on every call. */
async function startRegistry(): Promise<{ server: Server; port: number; pulls: () => number }> {
  const index = JSON.parse(await readFile(join(LAYOUT, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  const manifestDigest = index.manifests[0]?.digest ?? "";
  const blob = (digest: string) => readFile(join(LAYOUT, "blobs", "sha256", digest.replace(/^sha256:/, "")));
  const expected = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
  let manifestsServed = 0;
  const server = createServer((request, response) => {
    void (async () => {
      if (request.headers.authorization !== expected) {
        response.writeHead(401, { "www-authenticate": 'Basic realm="airlock-test"', "docker-distribution-api-version": "registry/2.0" }).end();
        return;
      }
      const url = request.url ?? "";
      if (url === "/v2/" || url === "/v2") {
        response.writeHead(200, { "docker-distribution-api-version": "registry/2.0" }).end("{}");
        return;
      }
      const manifest = /^\/v2\/airlock-test\/pulled\/manifests\/([^/]+)$/.exec(url);
      if (manifest && (manifest[1] === "1" || manifest[1] === manifestDigest)) {
        const body = await blob(manifestDigest);
        if (request.method === "GET") manifestsServed += 1;
        response.writeHead(200, { "content-type": "application/vnd.oci.image.manifest.v1+json", "docker-content-digest": manifestDigest, "content-length": body.length });
        response.end(request.method === "HEAD" ? undefined : body);
        return;
      }
      const blobMatch = /^\/v2\/airlock-test\/pulled\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url);
      if (blobMatch?.[1]) {
        const body = await blob(blobMatch[1]).catch(() => undefined);
        if (body) {
          response.writeHead(200, { "content-type": "application/octet-stream", "docker-content-digest": blobMatch[1], "content-length": body.length });
          response.end(request.method === "HEAD" ? undefined : body);
          return;
        }
      }
      response.writeHead(404, { "content-type": "application/json" }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}');
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return { server, port: typeof address === "object" && address ? address.port : 0, pulls: () => manifestsServed };
}

describe("docker runtime: pulling a missing image", { skip }, () => {
  let registry: Awaited<ReturnType<typeof startRegistry>>;
  let root: string;
  let image: string;
  let jobId = 850_000 + Math.floor(Math.random() * 10_000);

  before(async () => {
    registry = await startRegistry();
    image = `127.0.0.1:${registry.port}/airlock-test/pulled:1`;
    root = await mkdtemp(join(tmpdir(), "airlock-docker-pull-"));
  });

  after(async () => {
    const { Pool } = await import("undici");
    const pool = new Pool("http://docker", { connect: { socketPath: SOCKET } });
    await (await pool.request({ method: "DELETE", path: `/v1.41/images/${encodeURIComponent(image)}?force=1` })).body.text();
    await pool.close();
    await new Promise((resolve) => registry.server.close(resolve));
    await rm(root, { recursive: true, force: true });
  });

  async function runStep(registryAuth?: Record<string, { username: string; password: string }>) {
    jobId += 1;
    const workspace = join(root, `job-${jobId}`);
    await mkdir(workspace, { recursive: true });
    const sandbox = await runtime.createSandbox(
      { jobId, attempt: 1, executorName: "pull-test", workspace, scratchDir: workspace, resources: {}, labels: sandboxLabels("pull-test", jobId, 1), registryAuth, logger: silentLogger },
      new AbortController().signal,
    );
    const commands = ["cat /etc/airlock-image"];
    let output = "";
    try {
      const outcome = await sandbox.exec(
        { step: { key: "pulled", image, commands, dir: ".", env: {} }, env: {}, script: stepScript(commands) },
        { write: (chunk) => (output += Buffer.from(chunk).toString()) },
        AbortSignal.timeout(60_000),
      );
      return { outcome, output };
    } finally {
      await sandbox.destroy();
    }
  }

  it("errors the step (a sandbox error, so the attempt is retried) naming the image when the registry refuses", async () => {
    for (const auth of [undefined, { [`127.0.0.1:${registry.port}`]: { username: USER, password: "wrong" } }]) {
      await assert.rejects(runStep(auth), (error: unknown) => {
        assert.ok(error instanceof SandboxError, String(error));
        assert.ok(error.message.includes(image), error.message);
        assert.match(error.message, /could not be pulled/);
        return true;
      });
    }
    assert.equal(registry.pulls(), 0, "no manifest was served without the right credentials");
  });

  it("pulls with the job's credentials for that registry, then runs the step in the pulled image", async () => {
    const { outcome, output } = await runStep({ "ghcr.io": { username: "other", password: "other-secret" }, [`127.0.0.1:${registry.port}`]: { username: USER, password: PASSWORD } });
    assert.equal(outcome.exitCode, 0, `${JSON.stringify(outcome)} ${output}`);
    assert.match(output, /pulling it/);
    assert.match(output, /^busybox$/m);
    assert.doesNotMatch(output, new RegExp(PASSWORD));
    assert.ok(registry.pulls() >= 1);
    const again = await runStep();
    assert.equal(again.outcome.exitCode, 0, "once pulled, the local image is used without credentials");
    assert.doesNotMatch(again.output, /pulling it/);
  });
});
