/**
 * An executor frozen (SIGSTOP) past its lease, then thawed (SIGCONT): the coordinator has given
 * the job to another executor meanwhile, so everything the frozen one sends about its old attempt
 * is refused and the job ends exactly once, with the other executor's result.
 *
 * Two halves: a real executor process frozen and thawed (its step keeps printing and writes a
 * result file while it is frozen); and the same stale attempt played over HTTP with a real job
 * token, so each kind of late write (log append, step start/finish, artifact upload, complete,
 * fail, error, heartbeat) is sent for certain and its answer checked.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AIRLOCK_VERSION, EXECUTOR_AUTH_SCHEME } from "../../src/protocol/index.ts";
import { startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { attemptLog, printFigures, sleep, until } from "./helpers.ts";

const LEASE_MS = 1500;

describe("fault: executor SIGSTOPped past its lease, then SIGCONTed", { concurrency: false }, () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ executors: 0, coordinatorArgs: ["--lease-timeout", `${LEASE_MS}ms`] });
  });
  after(async () => {
    await cluster?.close();
  });

  const resultJob = (queue: string, gate: string) => ({
    queue,
    isolation: "none",
    maxAttempts: 2,
    steps: [
      {
        key: "work",
        commands: [
          'echo "attempt $AIRLOCK_ATTEMPT began"',
          // Attempt 1 waits (its executor frozen meanwhile) and then has everything to report.
          `if [ "$AIRLOCK_ATTEMPT" = 1 ]; then while [ ! -e ${gate} ]; do sleep 0.05; done; echo "late line of attempt 1"; fi`,
          'echo "result of attempt $AIRLOCK_ATTEMPT" > result.txt',
          'echo "attempt $AIRLOCK_ATTEMPT ended"',
        ],
      },
    ],
    outputs: { paths: ["result.txt"] },
  });

  it("a real frozen executor: the job is completed once, by the other executor; the thawed one's writes leave no trace", async (t) => {
    const gate = join(cluster.dir, "thawed");
    const frozen = cluster.startExecutor(["--queues", "stop", "--heartbeat-interval", "300ms", "--name", "frozen"]);
    const submitted = await cluster.api.submit(resultJob("stop", gate));
    await until("attempt 1 began", async () => /attempt 1 began/.test((await attemptLog(cluster.coordinator.url, cluster.coordinator.apiToken, submitted.id, "work", 1)).text));
    frozen.child.kill("SIGSTOP");
    const stoppedAt = Date.now();
    const rescuer = cluster.startExecutor(["--queues", "stop", "--heartbeat-interval", "300ms", "--name", "rescuer"]);
    const done = await waitForJob(cluster.api, submitted.id, undefined, 30_000);
    const reclaimMs = Date.parse(done.startedAt ?? "") - stoppedAt;
    assert.equal(done.state, "completed", done.failureMessage ?? "");
    assert.equal(done.attempt, 2);
    assert.equal(done.executorName, "rescuer");
    const logBefore = (await attemptLog(cluster.coordinator.url, cluster.coordinator.apiToken, submitted.id, "work", 1)).text;

    // Thaw: the step of attempt 1 now prints its late line, writes its result and exits 0.
    await writeFile(gate, "go");
    frozen.child.kill("SIGCONT");
    const executorLog = () => readFileSync(frozen.logFile, "utf8");
    await until("the thawed executor gave the attempt up", () => /attempt abandoned: its lease is gone|lost its lease/.test(executorLog()), 15_000);
    await sleep(1000);

    const after = await cluster.api.getJob(submitted.id);
    assert.equal(after.state, "completed");
    assert.equal(after.attempt, 2, "no third attempt");
    assert.equal(after.executorName, "rescuer");
    assert.equal(after.finishedAt, done.finishedAt, "the job ended once");
    assert.equal((await cluster.api.artifactBytes(submitted.id, "result.txt")).toString(), "result of attempt 2\n", "the other executor's result stands");
    const logAfter = (await attemptLog(cluster.coordinator.url, cluster.coordinator.apiToken, submitted.id, "work", 1)).text;
    assert.equal(logAfter, logBefore, "attempt 1's log took nothing after the freeze");
    assert.doesNotMatch(logAfter, /late line/);
    assert.match((await attemptLog(cluster.coordinator.url, cluster.coordinator.apiToken, submitted.id, "work", 2)).text, /attempt 2 began\nattempt 2 ended\n$/);

    // The thawed executor is healthy: with the rescuer gone, it takes and completes the next job.
    await rescuer.stop(5000);
    const next = await waitForJob(cluster.api, (await cluster.api.submit({ queue: "stop", isolation: "none", steps: [{ commands: ["true"] }] })).id);
    assert.deepEqual([next.state, next.executorName], ["completed", "frozen"]);
    printFigures(t, "executor SIGSTOP past lease (real process)", { lease_ms: LEASE_MS, reclaim_ms: reclaimMs, attempts: after.attempt, ended: 1, late_bytes_stored: logAfter.length - logBefore.length, duplicates: 0 });
  });

  it("each kind of late write with a lapsed attempt's token is refused (409 lease_lost) and changes nothing", async (t) => {
    const { url, executorToken, apiToken } = cluster.coordinator;
    const executorAuth = `${EXECUTOR_AUTH_SCHEME} ${executorToken}`;
    const identity = { executorName: "stale-probe", hostname: "test", version: AIRLOCK_VERSION, runtime: "shell", isolation: ["none"], network: "internet", queues: ["probe"] };
    const submitted = await cluster.api.submit({ ...resultJob("probe", join(cluster.dir, "never")), steps: [{ key: "work", commands: ['echo "attempt $AIRLOCK_ATTEMPT"', 'echo "result of attempt $AIRLOCK_ATTEMPT" > result.txt'] }] });
    const dequeued = await fetch(`${url}/.executors/dequeue`, { method: "POST", headers: { authorization: executorAuth, "content-type": "application/json" }, body: JSON.stringify({ ...identity, waitMs: 5000 }) });
    assert.equal(dequeued.status, 200);
    const payload = (await dequeued.json()) as { id: number; attempt: number; token: string };
    assert.deepEqual([payload.id, payload.attempt], [submitted.id, 1]);
    const jobAuth = `Bearer ${payload.token}`;
    const write = (method: string, path: string, body: string | Buffer, contentType: string) =>
      fetch(`${url}/.executors/jobs/${payload.id}${path}`, { method, headers: { authorization: jobAuth, "content-type": contentType }, body });
    // While the lease holds, the token works.
    assert.equal((await write("POST", "/logs/work?offset=0", Buffer.from("early\n"), "application/octet-stream")).status, 200);

    // "Freeze": no heartbeat. Another executor reclaims the job and completes it.
    const rescuer = cluster.startExecutor(["--queues", "probe", "--heartbeat-interval", "300ms", "--name", "probe-rescuer"]);
    const done = await waitForJob(cluster.api, submitted.id, undefined, 30_000);
    assert.equal(done.state, "completed");
    assert.equal(done.attempt, 2);

    const late: [string, () => Promise<Response>][] = [
      ["log append", () => write("POST", "/logs/work?offset=6", Buffer.from("late\n"), "application/octet-stream")],
      ["log append at 0", () => write("POST", "/logs/work?offset=0", Buffer.from("early\nlate\n"), "application/octet-stream")],
      ["step start", () => write("POST", "/steps/work/start", "{}", "application/json")],
      ["step finish", () => write("POST", "/steps/work/finish", JSON.stringify({ exitCode: 0, durationMs: 5, state: "completed" }), "application/json")],
      ["artifact upload", () => write("PUT", "/artifacts/result.txt", Buffer.from("result of the stale attempt\n"), "application/octet-stream")],
      ["complete", () => write("POST", "/complete", "{}", "application/json")],
      ["fail", () => write("POST", "/fail", JSON.stringify({ message: "late failure" }), "application/json")],
      ["error", () => write("POST", "/error", JSON.stringify({ message: "late error" }), "application/json")],
    ];
    const refused: string[] = [];
    for (const [what, send] of late) {
      const response = await send();
      const body = (await response.json()) as { error?: { code?: string } };
      assert.equal(response.status, 409, `${what}: ${JSON.stringify(body)}`);
      assert.equal(body.error?.code, "lease_lost", what);
      refused.push(what);
    }
    const heartbeat = await fetch(`${url}/.executors/heartbeat`, { method: "POST", headers: { authorization: executorAuth, "content-type": "application/json" }, body: JSON.stringify({ ...identity, jobIds: [payload.id] }) });
    assert.equal(heartbeat.status, 200);
    assert.deepEqual(((await heartbeat.json()) as { knownIds: number[] }).knownIds, [], "the heartbeat renews nothing: the job is not the stale executor's any more");
    refused.push("heartbeat");

    const final = await cluster.api.getJob(submitted.id);
    assert.deepEqual([final.state, final.attempt, final.finishedAt, final.executorName], ["completed", 2, done.finishedAt, "probe-rescuer"], "the job ended once, as the rescuer reported it");
    assert.equal((await cluster.api.artifactBytes(submitted.id, "result.txt")).toString(), "result of attempt 2\n");
    assert.equal((await attemptLog(url, apiToken, submitted.id, "work", 1)).text, "early\n", "the lapsed attempt's log kept what it sent in time, nothing later");
    await rescuer.stop(5000);
    printFigures(t, "late writes of a lapsed attempt", { refused: `${refused.length}/${late.length + 1}`, kinds: refused.join("|"), ended: 1, duplicates: 0 });
  });
});
