/**
 * Bad input at every door: each gets a clear 4xx naming what is wrong, and nothing stored changes.
 * The test plays the executor itself (raw HTTP with the executor token) to hold real job tokens.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { http, makeRepo, startCluster, type Cluster } from "../helpers/cluster.ts";

describe("bad input", () => {
  let cluster: Cluster;
  let url: string;
  let api: Record<string, string>;
  let executor: Record<string, string>;

  const identity = { executorName: "manual", hostname: "h", version: "t", runtime: "shell", isolation: ["none"], network: "internet", queues: ["manual"], waitMs: 0 };

  /** Everything a user can see, to compare before and after the bad requests. */
  async function snapshot(): Promise<string> {
    const jobs = await cluster.api.listJobs({ limit: 500 });
    const details = await Promise.all(jobs.map((job) => cluster.api.getJob(job.id)));
    return JSON.stringify({ repositories: await cluster.api.repositories(), jobs: details });
  }

  async function dequeue(): Promise<{ id: number; token: string; attempt: number }> {
    const reply = await http(`${url}/.executors/dequeue`, { method: "POST", headers: executor, body: JSON.stringify(identity) });
    assert.equal(reply.status, 200, reply.text);
    return reply.body as { id: number; token: string; attempt: number };
  }

  before(async () => {
    cluster = await startCluster({ executors: 0, coordinatorArgs: ["--max-body-size", "64k", "--max-log-chunk", "64k"] });
    url = cluster.coordinator.url;
    api = { authorization: `Bearer ${cluster.coordinator.apiToken}`, "content-type": "application/json" };
    executor = { authorization: `token-executor ${cluster.coordinator.executorToken}`, "content-type": "application/json" };
    await cluster.api.addRepository("acme/one", await makeRepo(join(cluster.dir, "one"), { "a.txt": "a\n" }));
    await cluster.api.addRepository("acme/two", await makeRepo(join(cluster.dir, "two"), { "b.txt": "b\n" }));
  });
  after(async () => {
    await cluster.close();
  });

  it("refuses bad job specs with a 4xx naming the field, storing nothing", async () => {
    const before = await snapshot();
    const cases: [string, number, RegExp][] = [
      ["{not json", 400, /not valid JSON/],
      [JSON.stringify({ steps: [] }), 400, /steps/],
      [JSON.stringify({ steps: [{ commands: ["x"] }], nonsense: true }), 400, /nonsense/],
      [JSON.stringify({ repository: "acme/nope", steps: [{ commands: ["x"] }] }), 404, /acme\/nope.*not registered/],
      [JSON.stringify({ repository: "acme/one", commit: "no-such-branch", steps: [{ commands: ["x"] }] }), 400, /commit.*no-such-branch.*does not exist/],
      [JSON.stringify({ repository: "acme/one", commit: "--upload-pack=touch /tmp/x", steps: [{ commands: ["x"] }] }), 400, /commit/],
      [JSON.stringify({ steps: [{ commands: ["x"] }], files: { "../escape.txt": { content: "x" } } }), 400, /files.*\.\./],
      [JSON.stringify({ steps: [{ commands: ["x"] }], files: { "/etc/cron.d/x": { content: "x" } } }), 400, /absolute/],
      [JSON.stringify({ repository: "acme/one", steps: [{ commands: ["x"] }], outputs: { paths: ["../../etc/passwd"] } }), 400, /outputs\.paths/],
      [JSON.stringify({ steps: [{ commands: ["x"], dir: "../.." }] }), 400, /steps\.0\.dir/],
      [JSON.stringify({ steps: [{ commands: ["x"] }], files: { "big.txt": { content: "x".repeat(70 * 1024) } } }), 413, /larger/],
    ];
    for (const [body, status, message] of cases) {
      const reply = await http(`${url}/api/jobs`, { method: "POST", headers: api, body });
      assert.equal(reply.status, status, `${body.slice(0, 80)} -> ${reply.text}`);
      assert.match(JSON.stringify(reply.body), message, body.slice(0, 80));
    }
    assert.equal(await snapshot(), before, "nothing stored changed");
  });

  it("refuses missing and wrong credentials", async () => {
    const before = await snapshot();
    const spec = JSON.stringify({ isolation: "none", steps: [{ commands: ["x"] }] });
    assert.equal((await http(`${url}/api/jobs`, { method: "POST", headers: { "content-type": "application/json" }, body: spec })).status, 401);
    assert.equal((await http(`${url}/api/jobs`, { method: "POST", headers: { ...api, authorization: "Bearer wrong" }, body: spec })).status, 401);
    assert.equal((await http(`${url}/api/jobs`, { method: "POST", headers: { ...api, authorization: `Bearer ${cluster.coordinator.executorToken}` }, body: spec })).status, 401, "the executor token is not an API token");
    const badExecutor = await http(`${url}/.executors/dequeue`, { method: "POST", headers: { ...executor, authorization: "token-executor nope" }, body: JSON.stringify(identity) });
    assert.equal(badExecutor.status, 401);
    assert.equal((await http(`${url}/.executors/heartbeat`, { method: "POST", headers: api, body: JSON.stringify({ ...identity, jobIds: [] }) })).status, 401, "the API token is not an executor token");
    assert.equal(await snapshot(), before);
  });

  it("scopes job tokens to their job, repository and live attempt", async () => {
    const submit = async (repository: string) =>
      http(`${url}/api/jobs`, { method: "POST", headers: api, body: JSON.stringify({ queue: "manual", repository, isolation: "none", steps: [{ commands: ["x"] }] }) });
    assert.equal((await submit("acme/one")).status, 201);
    assert.equal((await submit("acme/two")).status, 201);
    const first = await dequeue();
    const second = await dequeue();
    const asJob = (token: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${token}`, ...extra });
    const octet = { "content-type": "application/octet-stream" };

    const ok = await http(`${url}/.executors/jobs/${first.id}/logs/prepare?offset=0`, { method: "POST", headers: asJob(first.token, octet), body: "hello" });
    assert.equal(ok.status, 200, ok.text);
    const before = await snapshot();

    const otherJob = await http(`${url}/.executors/jobs/${second.id}/logs/prepare?offset=0`, { method: "POST", headers: asJob(first.token, octet), body: "intruder" });
    assert.equal(otherJob.status, 403);
    assert.match(otherJob.text, /for job/);
    const otherRepo = await http(`${url}/.executors/git/acme/two/info/refs?service=git-upload-pack`, { headers: asJob(first.token) });
    assert.equal(otherRepo.status, 403);
    const ownRepo = await http(`${url}/.executors/git/acme/one/info/refs?service=git-upload-pack`, { headers: asJob(first.token) });
    assert.equal(ownRepo.status, 200);
    const push = await http(`${url}/.executors/git/acme/one/info/refs?service=git-receive-pack`, { headers: asJob(first.token) });
    assert.equal(push.status, 403, "pushing is never allowed");
    const forged = await http(`${url}/.executors/jobs/${first.id}/complete`, { method: "POST", headers: asJob(`${first.token}x`, { "content-type": "application/json" }), body: "{}" });
    assert.equal(forged.status, 401);
    const gap = await http(`${url}/.executors/jobs/${first.id}/logs/prepare?offset=999`, { method: "POST", headers: asJob(first.token, octet), body: "late" });
    assert.equal(gap.status, 409);
    const badOffset = await http(`${url}/.executors/jobs/${first.id}/logs/prepare?offset=-1`, { method: "POST", headers: asJob(first.token, octet), body: "x" });
    assert.equal(badOffset.status, 400);
    const huge = await http(`${url}/.executors/jobs/${first.id}/logs/prepare?offset=5`, { method: "POST", headers: asJob(first.token, octet), body: Buffer.alloc(70 * 1024, 97) });
    assert.equal(huge.status, 413);
    const escape = await http(`${url}/.executors/jobs/${first.id}/artifacts/../../etc`, { method: "PUT", headers: asJob(first.token, octet), body: "x" });
    assert.ok(escape.status >= 400 && escape.status < 500, `artifact name escape -> ${escape.status}`);
    const badStep = await http(`${url}/.executors/jobs/${first.id}/steps/prepare/finish`, {
      method: "POST",
      headers: asJob(first.token, { "content-type": "application/json" }),
      body: JSON.stringify({ exitCode: "zero", durationMs: 1, state: "completed" }),
    });
    assert.equal(badStep.status, 400);
    assert.match(badStep.text, /exitCode/);
    assert.equal(await snapshot(), before, "nothing stored changed");

    const done = await http(`${url}/.executors/jobs/${first.id}/complete`, { method: "POST", headers: asJob(first.token, { "content-type": "application/json" }), body: "{}" });
    assert.equal(done.status, 200, done.text);
    const stale = await http(`${url}/.executors/jobs/${first.id}/logs/prepare?offset=5`, { method: "POST", headers: asJob(first.token, octet), body: " again" });
    assert.equal(stale.status, 409, "a token dies with its attempt");
    assert.match(stale.text, /lease_lost/);
    const staleGit = await http(`${url}/.executors/git/acme/one/info/refs?service=git-upload-pack`, { headers: asJob(first.token) });
    assert.equal(staleGit.status, 409);
    assert.equal((await cluster.api.readLog(first.id, "prepare")).toString(), "hello");
  });
});
