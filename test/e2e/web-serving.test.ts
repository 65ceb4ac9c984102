/**
 * How the coordinator serves the web UI (plain HTTP, no browser): the built files with security
 * headers and caching, index.html at the UI's routes, JSON 404s elsewhere, a clear page when
 * the UI is not built; and the queue history endpoint the charts use.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import { startLocalCoordinator, type LocalCoordinator } from "../../src/cli/local-cluster.ts";
import { ApiClient } from "../../src/cli/api-client.ts";
import { QueueHistory } from "../../src/protocol/index.ts";
import { baseEnv, ENTRY, http, ROOT, startCluster, tempDir, waitForJob, type Cluster } from "../helpers/cluster.ts";

const BUILT = existsSync(join(ROOT, "web", "dist", "index.html"));

describe("serving the web UI", { concurrency: false }, () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster();
  });
  after(async () => {
    await cluster.close();
  });

  it("serves index.html at / and at every UI route, with strict security headers", async (t) => {
    if (!BUILT) return t.skip("web/dist is not built (npm run build)");
    for (const path of ["/", "/jobs", "/jobs/42", "/executors", "/queues"]) {
      const response = await fetch(`${cluster.coordinator.url}${path}`);
      assert.equal(response.status, 200, path);
      assert.equal(response.headers.get("content-type"), "text/html; charset=utf-8");
      const csp = response.headers.get("content-security-policy") ?? "";
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.match(csp, /style-src 'self'(;|$)/);
      assert.match(csp, /connect-src 'self'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
      assert.equal(response.headers.get("x-content-type-options"), "nosniff");
      assert.equal(response.headers.get("referrer-policy"), "no-referrer");
      assert.equal(response.headers.get("x-frame-options"), "DENY");
      assert.equal(response.headers.get("cache-control"), "no-cache");
      const html = await response.text();
      assert.match(html, /<script type="module" src="\/assets\/app-[A-Z0-9]+\.js"><\/script>/);
      assert.doesNotMatch(html, /<script(?![^>]*\ssrc=)[^>]*>/, "no inline script");
      assert.doesNotMatch(html, /<style|\sstyle=/, "no inline style");
      assert.doesNotMatch(html, /https?:\/\//, "nothing loaded from elsewhere");
    }
  });

  it("serves hashed assets for good, gzipped when asked, and answers 304 to a matching ETag", async (t) => {
    if (!BUILT) return t.skip("web/dist is not built (npm run build)");
    const html = await (await fetch(`${cluster.coordinator.url}/`)).text();
    const script = /src="(\/assets\/app-[A-Z0-9]+\.js)"/.exec(html)?.[1] ?? "";
    const response = await fetch(`${cluster.coordinator.url}${script}`, { headers: { "accept-encoding": "identity" } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal(response.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.ok(response.headers.get("content-security-policy"));
    const body = Buffer.from(await response.arrayBuffer());
    assert.ok(body.length > 1000);
    assert.doesNotMatch(body.toString(), /https?:\/\/(?!www\.w3\.org)[a-z]/i, "the bundle references no other origin");

    const { request } = await import("node:http");
    const gzipped = await new Promise<{ encoding: string | undefined; body: Buffer }>((resolve, reject) => {
      request(`${cluster.coordinator.url}${script}`, { headers: { "accept-encoding": "gzip" } }, (res) => {
        const parts: Buffer[] = [];
        res.on("data", (chunk: Buffer) => parts.push(chunk));
        res.on("end", () => resolve({ encoding: res.headers["content-encoding"], body: Buffer.concat(parts) }));
      })
        .on("error", reject)
        .end();
    });
    assert.equal(gzipped.encoding, "gzip");
    assert.deepEqual(gunzipSync(gzipped.body), body);

    const etag = response.headers.get("etag") ?? "";
    const again = await fetch(`${cluster.coordinator.url}${script}`, { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
  });

  it("keeps JSON 404s for unknown assets and API routes", async () => {
    for (const path of ["/assets/nope.js", "/assets/..%2Findex.html", "/api/nope", "/jobs/1/extra"]) {
      const response = await http(`${cluster.coordinator.url}${path}`, {});
      assert.equal(response.status, 404, path);
      assert.equal((response.body as { error: { code: string } }).error.code, "not_found", path);
    }
  });

  it("explains at / when the UI is not built, and the API still works", async () => {
    const dir = await tempDir();
    const empty = join(dir, "no-ui");
    await mkdir(empty);
    let coordinator: LocalCoordinator | undefined;
    try {
      coordinator = await startLocalCoordinator({ entry: ENTRY, dataDir: join(dir, "data"), env: baseEnv, extraArgs: ["--web-dir", empty] });
      const response = await fetch(`${coordinator.url}/`);
      assert.equal(response.status, 503);
      assert.match(response.headers.get("content-security-policy") ?? "", /default-src 'none'/);
      const text = await response.text();
      assert.match(text, /web UI is not built/);
      assert.match(text, /npm run build/);
      assert.ok(text.includes(join(empty, "index.html")));
      const api = new ApiClient({ url: coordinator.url, token: coordinator.apiToken });
      assert.deepEqual(await api.queues(), []);
      await api.close();
    } finally {
      await coordinator?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("serves per-queue history in buckets to API-token holders only", async () => {
    const unauthorized = await http(`${cluster.coordinator.url}/api/queues/history`, {});
    assert.equal(unauthorized.status, 401);
    const auth = { authorization: `Bearer ${cluster.coordinator.apiToken}` };
    const bad = await http(`${cluster.coordinator.url}/api/queues/history?window=2d`, { headers: auth });
    assert.equal(bad.status, 400);
    assert.match(bad.text, /window/);
    const tooMany = await http(`${cluster.coordinator.url}/api/queues/history?window=24h&bucket=1s`, { headers: auth });
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.text, /at most 1440 buckets/);

    const ok = await cluster.api.submit({ queue: "default", isolation: "none", steps: [{ commands: ["true"] }] });
    const bad2 = await cluster.api.submit({ queue: "default", isolation: "none", steps: [{ commands: ["exit 1"] }] });
    await waitForJob(cluster.api, ok.id);
    await waitForJob(cluster.api, bad2.id);
    // A queue nobody serves: its job waits, and shows in the depth.
    await cluster.api.submit({ queue: "unserved", isolation: "none", steps: [{ commands: ["true"] }] });
    await new Promise((resolve) => setTimeout(resolve, 3100)); // past the endpoint's cache
    const response = await http(`${cluster.coordinator.url}/api/queues/history?window=10m&bucket=1m`, { headers: auth });
    assert.equal(response.status, 200);
    const history = QueueHistory.parse(response.body);
    assert.equal(history.bucketMs, 60_000);
    assert.equal(history.complete, true);
    const charts = history.queues.find((queue) => queue.name === "default");
    assert.ok(charts);
    assert.equal(charts.buckets.length, 10);
    const sum = (key: "completed" | "failed" | "claimed") => charts.buckets.reduce((total, bucket) => total + bucket[key], 0);
    assert.equal(sum("completed"), 1);
    assert.equal(sum("failed"), 1);
    assert.equal(sum("claimed"), 2);
    assert.ok(charts.buckets.some((bucket) => bucket.pickupP50Ms !== null));
    const unserved = history.queues.find((queue) => queue.name === "unserved");
    assert.equal(unserved?.buckets.at(-1)?.depth, 1);
    assert.ok((unserved?.buckets.at(-1)?.oldestWaitMs ?? 0) >= 3000);
  });
});
