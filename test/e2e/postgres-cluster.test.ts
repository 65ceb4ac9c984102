/**
 * Horizontal scale on a real Postgres with real processes: two coordinators (each with its own
 * data dir, sharing one database and the same tokens) and executors spread over them.
 * Each job step appends its job's mark to a file on the host (shell runtime), so a step that ran
 * twice, or never, shows. (A coordinator killed and Postgres crashed mid-run: test/faults/postgres.test.ts.)
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ApiClient } from "../../src/cli/api-client.ts";
import { startAirlock, startLocalCoordinator, type LocalCoordinator, type ManagedProcess } from "../../src/cli/local-cluster.ts";
import { baseEnv, commitFile, ENTRY, logText, makeRepo, tempDir, waitForJob } from "../helpers/cluster.ts";
import { freshDatabase, NO_POSTGRES } from "../helpers/postgres.ts";

const EXECUTOR_TOKEN = "shared-executor-token-for-the-postgres-cluster-test";
const API_TOKEN = "shared-api-token-for-the-postgres-cluster-test";

describe("two coordinators on one Postgres", { skip: NO_POSTGRES, concurrency: false }, () => {
  let dir: string;
  let databaseUrl: string;
  let dropDatabase: () => Promise<void>;
  let a: LocalCoordinator;
  let b: LocalCoordinator;
  let apiA: ApiClient;
  let apiB: ApiClient;
  const executors: ManagedProcess[] = [];
  let count = 0;

  const coordinator = (name: string) =>
    startLocalCoordinator({
      entry: ENTRY,
      dataDir: join(dir, name),
      env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: EXECUTOR_TOKEN, AIRLOCK_API_TOKEN: API_TOKEN },
      extraArgs: ["--database", databaseUrl, "--executor-token", EXECUTOR_TOKEN, "--api-token", API_TOKEN, "--lease-timeout", "3s", "--log-level", "warn"],
    });

  function startExecutor(urls: string[], queues: string, extra: string[] = []): { process: ManagedProcess; name: string } {
    count += 1;
    const name = `pg-executor-${count}`;
    const process = startAirlock(
      ENTRY,
      ["executor", "run", "--url", urls.join(","), "--runtime", "shell", "--queues", queues, "--data", join(dir, name), "--heartbeat-interval", "500ms", "--name", name, "--log-format", "json", ...extra],
      { env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: EXECUTOR_TOKEN }, logFile: join(dir, `${name}.log`) },
    );
    executors.push(process);
    return { process, name };
  }

  /** A job whose step records `mark` once in `file`, then runs `then`. */
  const markingJob = (queue: string, file: string, mark: string, then = "true") => ({
    queue,
    isolation: "none",
    maxAttempts: 3,
    steps: [{ key: "mark", commands: [`echo ${mark} >> ${file}`, then] }],
  });

  async function marks(file: string): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    if (!existsSync(file)) return counts;
    for (const line of (await readFile(file, "utf8")).split("\n").filter(Boolean)) counts.set(line, (counts.get(line) ?? 0) + 1);
    return counts;
  }

  async function waitAll(api: ApiClient, ids: number[], timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const jobs = await Promise.all(ids.map((id) => api.getJob(id)));
      const open = jobs.filter((job) => !["completed", "failed", "errored", "canceled"].includes(job.state));
      if (open.length === 0) return jobs;
      if (Date.now() > deadline) throw new Error(`${open.length} of ${ids.length} jobs still open, e.g. ${JSON.stringify(open[0])}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  before(async () => {
    dir = await tempDir("airlock-pg-cluster-");
    ({ url: databaseUrl, drop: dropDatabase } = await freshDatabase());
    a = await coordinator("coordinator-a");
    b = await coordinator("coordinator-b");
    apiA = new ApiClient({ url: a.url, token: API_TOKEN });
    apiB = new ApiClient({ url: b.url, token: API_TOKEN });
  });

  after(async () => {
    await Promise.all(executors.map((executor) => executor.stop(5000)));
    await Promise.all([a?.stop(5000), b?.stop(5000)]);
    await apiA?.close();
    await apiB?.close();
    await dropDatabase?.();
    const { rm } = await import("node:fs/promises");
    await rm(dir, { recursive: true, force: true });
  });

  it("answers a dequeue held on one coordinator when a job is submitted to the other", async () => {
    const held = fetch(`${a.url}/.executors/dequeue`, {
      method: "POST",
      headers: { authorization: `token-executor ${EXECUTOR_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ executorName: "held-poller", hostname: "test", version: "test", runtime: "shell", isolation: ["none"], network: "internet", queues: ["held"], waitMs: 20_000 }),
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const submitted = await apiB.submit({ queue: "held", isolation: "none", steps: [{ commands: ["true"] }] });
    const response = await held;
    assert.equal(response.status, 200, "the held dequeue got a job rather than timing out empty");
    const payload = (await response.json()) as { id: number; token: string };
    assert.equal(payload.id, submitted.id);
    const done = await fetch(`${b.url}/.executors/jobs/${payload.id}/complete`, {
      method: "POST",
      headers: { authorization: `Bearer ${payload.token}`, "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(done.status, 200, "the job token minted by A works on B");
    assert.equal((await apiA.getJob(submitted.id)).state, "completed");
  });

  it("streams live through one coordinator the logs written through the other", async () => {
    const marker = join(dir, "live-marker");
    startExecutor([a.url], "live");
    const submitted = await apiA.submit({
      queue: "live",
      isolation: "none",
      steps: [{ key: "talk", commands: ["echo first-line", `while [ ! -e ${marker} ]; do sleep 0.05; done`, "echo second-line"] }],
    });
    let text = "";
    let sawFirstWhileRunning = false;
    let ended = "";
    for await (const event of apiB.events(submitted.id)) {
      if (event.event === "log") text += (JSON.parse(event.data) as { text: string }).text;
      if (event.event === "end") {
        ended = (JSON.parse(event.data) as { state: string }).state;
        break;
      }
      if (!sawFirstWhileRunning && text.includes("first-line")) {
        sawFirstWhileRunning = (await apiB.getJob(submitted.id)).state === "processing";
        await writeFile(marker, "go");
      }
    }
    assert.ok(sawFirstWhileRunning, "B streamed the first line while the job was still running on A's executor");
    assert.match(text, /first-line\n[\s\S]*second-line/);
    assert.equal(ended, "completed");
  });

  it("serves a job's repository through either coordinator, fetching a commit one mirror has not seen", async () => {
    const source = await makeRepo(join(dir, "source-repo"), { "version.txt": "one\n" });
    await apiA.addRepository("acme/shared", source);
    startExecutor([b.url], "git");
    const spec = {
      queue: "git",
      repository: "acme/shared",
      commit: "main",
      isolation: "none",
      steps: [{ key: "show", commands: ["cat version.txt", "echo changed > new.txt"] }],
      outputs: { diff: true },
    };
    const first = await waitForJob(apiB, (await apiB.submit(spec)).id);
    assert.equal(first.state, "completed", first.failureMessage ?? "");
    assert.match(await logText(apiB, first, "show"), /one/);
    // A learns of the new commit at submit time; B's mirror (cloned for the first job) has not seen it.
    await commitFile(source, "version.txt", "two\n");
    // Past the mirrors' fetch cooldown (1 s), so A fetches the new commit when resolving "main".
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const second = await waitForJob(apiB, (await apiA.submit(spec)).id);
    assert.equal(second.state, "completed", second.failureMessage ?? "");
    assert.match(await logText(apiB, second, "show"), /two/);
    assert.match((await apiA.artifactBytes(second.id, "diff")).toString(), /\+\+\+ b\/new.txt/, "the diff uploaded through B is served by A");
  });

  it("cancels through one coordinator a job running on an executor of the other", async () => {
    startExecutor([a.url], "cancel");
    const submitted = await apiA.submit({ queue: "cancel", isolation: "none", steps: [{ key: "wait", commands: ["echo waiting", "sleep 30"] }] });
    await waitForJob(apiA, submitted.id, (job) => job.steps[0]?.state === "running");
    await apiB.cancel(submitted.id);
    const job = await waitForJob(apiA, submitted.id, undefined, 20_000);
    assert.equal(job.state, "canceled");
  });

  it("runs 200 jobs over four executors and two coordinators, each exactly once", async () => {
    const file = join(dir, "marks-200");
    startExecutor([a.url, b.url], "bulk");
    startExecutor([a.url, b.url], "bulk");
    startExecutor([b.url, a.url], "bulk");
    startExecutor([b.url, a.url], "bulk");
    const ids: number[] = [];
    for (let index = 0; index < 200; index += 1) ids.push((await (index % 2 ? apiA : apiB).submit(markingJob("bulk", file, `job-${index}`))).id);
    const jobs = await waitAll(apiA, ids, 240_000);
    assert.deepEqual(jobs.filter((job) => job.state !== "completed").map((job) => [job.id, job.state, job.failureMessage]), []);
    assert.ok(jobs.every((job) => job.attempt === 1), "nothing was retried");
    const counts = await marks(file);
    assert.equal(counts.size, 200, "every job's step ran");
    assert.deepEqual([...counts].filter(([, n]) => n !== 1), [], "no step ran twice");
    const ran = new Set(jobs.map((job) => job.executorName));
    assert.ok(ran.size >= 2, `jobs were spread over executors (${[...ran].join(", ")})`);
  });

  it("reclaims through the other coordinator the job of an executor killed mid-job", async () => {
    const file = join(dir, "marks-reclaim");
    const started = join(dir, "reclaim-started");
    const doomed = startExecutor([a.url], "reclaim");
    const submitted = await apiA.submit(markingJob("reclaim", file, "reclaim", `if [ ! -e ${started} ]; then touch ${started}; sleep 15; fi`));
    await waitForJob(apiA, submitted.id, () => existsSync(started), 30_000);
    doomed.process.child.kill("SIGKILL");
    await doomed.process.exited;
    const rescuer = startExecutor([b.url], "reclaim");
    const job = await waitForJob(apiB, submitted.id, undefined, 60_000);
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    assert.equal(job.attempt, 2, "the lapsed attempt was requeued as a new one");
    assert.equal(job.executorName, rescuer.name);
    assert.equal((await marks(file)).get("reclaim"), 2, "one mark per attempt: the killed one and the reclaimed one");
  });
});
