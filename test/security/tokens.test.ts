/**
 * Tokens. At rest: the coordinator's generated tokens (and a local cluster's secrets key) are
 * 0600 in a 0700 data dir, stay so across restarts, and a loosened one is made private again.
 * In use: one table of every credential (none, forged, API, executor, live job tokens, the token of
 * an ended attempt, of a superseded attempt) against every API (user, executor-wide, job-scoped,
 * git), each answer asserted and printed; the refused requests change nothing stored.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chmod, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { http, makeRepo, startCluster, type Cluster } from "../helpers/cluster.ts";

const mode = async (path: string): Promise<string> => ((await stat(path)).mode & 0o777).toString(8).padStart(4, "0");

describe("tokens at rest", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ executors: 0 });
  });
  after(async () => {
    await cluster.close();
  });

  it("are 0600 in a 0700 data dir, stay so across restarts, and are made private again if loosened", async () => {
    const dir = cluster.coordinator.dataDir;
    const files = ["executor-token", "api-token", "secrets-key"];
    assert.equal(await mode(dir), "0700");
    for (const file of files) assert.equal(await mode(join(dir, file)), "0600", file);
    await chmod(join(dir, "api-token"), 0o644);
    await chmod(join(dir, "executor-token"), 0o640);
    const token = cluster.coordinator.apiToken;
    await cluster.restartCoordinator();
    assert.equal(cluster.coordinator.apiToken, token, "the same token after a restart");
    for (const file of files) assert.equal(await mode(join(dir, file)), "0600", `${file} after a restart`);
    assert.match(readFileSync(cluster.coordinator.logFile, "utf8"), /token file was readable by others: made private again/);
  });
});

type Credential = "none" | "forged" | "api" | "executor" | "job A" | "job A, ended" | "job D, superseded";

interface Row {
  who: Credential;
  what: string;
  method: string;
  path: string;
  body?: string | Buffer;
  type?: string;
  /** The status it must get. */
  expect: number;
}

describe("tokens on every API", () => {
  let cluster: Cluster;
  let url: string;
  const identity = { executorName: "manual", hostname: "h", version: "t", runtime: "shell", isolation: ["none"], network: "internet", queues: ["manual"], waitMs: 0 };

  before(async () => {
    // The test holds attempts without heartbeating: a long lease keeps them live however slow the machine.
    cluster = await startCluster({ executors: 0, coordinatorArgs: ["--lease-timeout", "10m"] });
    url = cluster.coordinator.url;
    await cluster.api.addRepository("acme/one", await makeRepo(join(cluster.dir, "one"), { "a.txt": "a\n" }));
    await cluster.api.addRepository("acme/two", await makeRepo(join(cluster.dir, "two"), { "b.txt": "b\n" }));
  });
  after(async () => {
    await cluster.close();
  });

  async function snapshot(): Promise<string> {
    const jobs = await cluster.api.listJobs({ limit: 500 });
    const details = await Promise.all(jobs.map((job) => cluster.api.getJob(job.id)));
    const logs = await Promise.all(details.map(async (job) => Promise.all(job.entries.map(async (entry) => (await cluster.api.readLog(job.id, entry.key)).toString("base64")))));
    return JSON.stringify({ repositories: await cluster.api.repositories(), jobs: details, logs });
  }

  it("each token type works only where it belongs, for its own job, repository and live attempt", async () => {
    const executorAuth = { authorization: `token-executor ${cluster.coordinator.executorToken}`, "content-type": "application/json" };
    const submit = async (repository: string, maxAttempts = 1): Promise<number> => {
      const job = await cluster.api.submit({ queue: "manual", repository, isolation: "none", maxAttempts, steps: [{ key: "one", commands: ["true"] }] });
      return job.id;
    };
    const dequeue = async (): Promise<{ id: number; token: string }> => {
      const reply = await http(`${url}/.executors/dequeue`, { method: "POST", headers: executorAuth, body: JSON.stringify(identity) });
      assert.equal(reply.status, 200, reply.text);
      return reply.body as { id: number; token: string };
    };
    const asJob = (token: string) => ({ authorization: `Bearer ${token}`, "content-type": "application/json" });

    // A (acme/one) and B (acme/two) run; C ended; D runs its second attempt, the first's token superseded.
    const a = await submit("acme/one");
    const b = await submit("acme/two");
    const c = await submit("acme/one");
    const d = await submit("acme/one", 2);
    const tokens = new Map<number, string>();
    for (let index = 0; index < 4; index += 1) {
      const claimed = await dequeue();
      tokens.set(claimed.id, claimed.token);
    }
    assert.deepEqual([...tokens.keys()].sort(), [a, b, c, d].sort());
    assert.equal((await http(`${url}/.executors/jobs/${c}/complete`, { method: "POST", headers: asJob(tokens.get(c) as string), body: "{}" })).status, 200);
    assert.equal((await http(`${url}/.executors/jobs/${d}/error`, { method: "POST", headers: asJob(tokens.get(d) as string), body: '{"message":"retry me"}' })).status, 200);
    const dSecond = await dequeue();
    assert.equal(dSecond.id, d);
    const ownAppend = await http(`${url}/.executors/jobs/${a}/logs/prepare?offset=0`, { method: "POST", headers: { ...asJob(tokens.get(a) as string), "content-type": "application/octet-stream" }, body: "x" });
    assert.equal(ownAppend.status, 200, ownAppend.text);

    const headers: Record<Credential, Record<string, string>> = {
      none: {},
      forged: { authorization: `Bearer ajt_${"A".repeat(43)}` },
      api: { authorization: `Bearer ${cluster.coordinator.apiToken}` },
      executor: { authorization: `token-executor ${cluster.coordinator.executorToken}` },
      "job A": { authorization: `Bearer ${tokens.get(a) as string}` },
      "job A, ended": { authorization: `Bearer ${tokens.get(c) as string}` },
      "job D, superseded": { authorization: `Bearer ${tokens.get(d) as string}` },
    };
    const spec = JSON.stringify({ queue: "manual", isolation: "none", steps: [{ commands: ["true"] }] });
    const heartbeat = JSON.stringify({ ...identity, jobIds: [] });
    const idle = JSON.stringify({ ...identity, queues: ["nobody-serves-this"] });
    const jobRoutes = (id: number, label: string) => [
      { what: `append log ${label}`, method: "POST", path: `/.executors/jobs/${id}/logs/prepare?offset=0`, body: "x", type: "application/octet-stream" },
      { what: `start step ${label}`, method: "POST", path: `/.executors/jobs/${id}/steps/one/start` },
      { what: `finish step ${label}`, method: "POST", path: `/.executors/jobs/${id}/steps/one/finish`, body: JSON.stringify({ state: "completed", exitCode: 0, durationMs: 1 }) },
      { what: `upload artifact ${label}`, method: "PUT", path: `/.executors/jobs/${id}/artifacts/report.txt`, body: "x", type: "application/octet-stream" },
      { what: `complete ${label}`, method: "POST", path: `/.executors/jobs/${id}/complete`, body: "{}" },
      { what: `fail ${label}`, method: "POST", path: `/.executors/jobs/${id}/fail`, body: "{}" },
    ];
    const routes = [
      { what: "list jobs", method: "GET", path: "/api/jobs" },
      { what: "submit job", method: "POST", path: "/api/jobs", body: spec },
      { what: "cancel job B", method: "POST", path: `/api/jobs/${b}/cancel` },
      { what: "add repository", method: "POST", path: "/api/repositories", body: JSON.stringify({ name: "acme/evil", source: join(cluster.dir, "one") }) },
      { what: "heartbeat", method: "POST", path: "/.executors/heartbeat", body: heartbeat },
      { what: "dequeue", method: "POST", path: "/.executors/dequeue", body: idle },
      { what: "auth check", method: "GET", path: "/.executors/auth-check" },
      ...jobRoutes(a, "of job A"),
      ...jobRoutes(b, "of job B"),
      ...jobRoutes(c, "of ended job C"),
      ...jobRoutes(d, "of job D"),
      { what: "git acme/one", method: "GET", path: "/.executors/git/acme/one/info/refs?service=git-upload-pack" },
      { what: "git acme/two", method: "GET", path: "/.executors/git/acme/two/info/refs?service=git-upload-pack" },
      { what: "git push acme/one", method: "GET", path: "/.executors/git/acme/one/info/refs?service=git-receive-pack" },
    ];
    const mutating = (what: string) => /^(submit|cancel|add repository|start|finish|upload|complete|fail)/.test(what);
    const expected = (who: Credential, what: string): number => {
      const user = /^(list jobs|submit|cancel|add repository)/.test(what);
      const executorWide = /^(heartbeat|dequeue|auth check)/.test(what);
      const git = what.startsWith("git");
      // Pushing is refused to everyone, before any token is looked at.
      if (what.startsWith("git push")) return 403;
      if (who === "none" || who === "forged") return 401;
      if (who === "api") return user || git ? 200 : 401;
      if (who === "executor") return executorWide ? (what === "dequeue" ? 204 : 200) : 401;
      if (user || executorWide) return 401;
      if (who === "job A") return what === "git acme/one" || what.endsWith("of job A") ? 200 : 403;
      // Tokens of attempts that ended are dead everywhere a job token is taken.
      return 409;
    };
    const rows: Row[] = [];
    for (const who of Object.keys(headers) as Credential[]) {
      for (const route of routes) {
        const expect = expected(who, route.what);
        // Requests that would rightly change something run only where they must be refused.
        if (expect < 300 && mutating(route.what)) continue;
        rows.push({ who, ...route, expect });
      }
    }

    const before = await snapshot();
    const results: { row: Row; status: number }[] = [];
    for (const row of rows) {
      const reply = await http(`${url}${row.path}`, {
        method: row.method,
        headers: { ...headers[row.who], ...(row.body === undefined ? {} : { "content-type": row.type ?? "application/json" }) },
        ...(row.body === undefined ? {} : { body: row.body }),
      });
      results.push({ row, status: reply.status });
    }
    const width = Math.max(...rows.map((row) => row.what.length));
    const lines = results.map(({ row, status }) => `${row.who.padEnd(18)} ${row.what.padEnd(width)} ${String(status).padEnd(4)} ${status === row.expect ? "holds" : `BREAKS (expected ${row.expect})`}`);
    process.stdout.write(`\n${"credential".padEnd(18)} ${"request".padEnd(width)} got  result\n${lines.join("\n")}\n\n`);
    const broken = results.filter(({ row, status }) => status !== row.expect);
    assert.deepEqual(broken.map(({ row, status }) => `${row.who} / ${row.what}: ${status}, expected ${row.expect}`), []);
    assert.ok(rows.length > 100, `${rows.length} requests tried`);
    assert.equal(await snapshot(), before, "nothing stored changed");
    assert.deepEqual((await cluster.api.repositories()).map((repository) => repository.name).sort(), ["acme/one", "acme/two"]);
  });
});
