/**
 * Faults with real processes: an executor SIGKILLed mid-step, a coordinator killed and
 * restarted mid-job, two executors racing for the same jobs.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { findMarked } from "../../src/runtimes/shell/process-tree.ts";
import { logText, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

describe("faults", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ executors: 0 });
  });
  after(async () => {
    await cluster.close();
  });

  it("requeues a job whose executor was SIGKILLed mid-step; another executor completes it as attempt 2", async () => {
    const first = cluster.startExecutor();
    const submitted = await cluster.api.submit({
      isolation: "none",
      steps: [{ key: "work", commands: ['echo "attempt $AIRLOCK_ATTEMPT"', 'if [ "$AIRLOCK_ATTEMPT" = 1 ]; then sleep 300 & sleep 300; fi', "echo finished"] }],
    });
    await waitForJob(cluster.api, submitted.id, (job) => job.steps[0]?.state === "running" && job.steps[0].size > 0);
    first.child.kill("SIGKILL");
    await first.exited;
    const orphans = findMarked((marker) => marker.startsWith(`shell-${submitted.id}-1-`));
    assert.ok(orphans.length > 0, "the dead executor left its step's background processes behind");

    cluster.startExecutor();
    const job = await waitForJob(cluster.api, submitted.id, undefined, 30_000);
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    assert.equal(job.attempt, 2, "the attempt count shows the retry");
    assert.equal(job.executorName, "test-executor-2");
    assert.match(await logText(cluster.api, job, "work"), /attempt 2\nfinished/);
    assert.deepEqual(findMarked((marker) => marker.startsWith(`shell-${submitted.id}-1-`)), [], "the new executor reaped the dead one's leftovers");
  });

  it("completes a job across a coordinator crash and restart, with its log whole", async () => {
    cluster.startExecutor();
    const submitted = await cluster.api.submit({
      isolation: "none",
      steps: [{ key: "count", commands: ["i=1; while [ $i -le 40 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done"] }],
    });
    await waitForJob(cluster.api, submitted.id, (job) => (job.steps[0]?.size ?? 0) > 20);
    cluster.coordinator.child.kill("SIGKILL");
    await cluster.coordinator.exited;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await cluster.restartCoordinator();
    const job = await waitForJob(cluster.api, submitted.id, undefined, 40_000);
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    assert.equal(job.attempt, 1, "the executor kept its lease through the restart");
    const expected = Array.from({ length: 40 }, (_, index) => `line-${index + 1}\n`).join("");
    assert.equal(await logText(cluster.api, job, "count"), expected, "every line once, in order");
  });

  it("SIGTERM drains: the running job finishes and the executor exits 0; a second SIGTERM hands the job back", async () => {
    const graceful = cluster.startExecutor(["--queues", "drain"]);
    const first = await cluster.api.submit({ queue: "drain", isolation: "none", steps: [{ key: "s", commands: ["echo begun", "sleep 2", "echo ended"] }] });
    await waitForJob(cluster.api, first.id, (job) => (job.steps[0]?.size ?? 0) > 0);
    graceful.child.kill("SIGTERM");
    const queuedMeanwhile = await cluster.api.submit({ queue: "drain", isolation: "none", steps: [{ commands: ["true"] }] });
    assert.equal(await graceful.exited, 0);
    const finished = await cluster.api.getJob(first.id);
    assert.equal(finished.state, "completed", "the running job finished before the executor left");
    assert.match(await logText(cluster.api, finished, "s"), /begun\nended/);
    assert.equal((await cluster.api.getJob(queuedMeanwhile.id)).state, "queued", "no new job was taken while draining");
    await cluster.api.cancel(queuedMeanwhile.id);

    const impatient = cluster.startExecutor(["--queues", "drain2"]);
    const second = await cluster.api.submit({ queue: "drain2", isolation: "none", steps: [{ key: "s", commands: ['echo "attempt $AIRLOCK_ATTEMPT"', 'if [ "$AIRLOCK_ATTEMPT" = 1 ]; then sleep 60; fi'] }] });
    await waitForJob(cluster.api, second.id, (job) => (job.steps[0]?.size ?? 0) > 0);
    impatient.child.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 300));
    impatient.child.kill("SIGTERM");
    assert.equal(await impatient.exited, 0);
    const handedBack = await cluster.api.getJob(second.id);
    assert.equal(handedBack.state, "queued", "the stopped job is errored and requeued for another executor");
    assert.match(handedBack.failureMessage ?? "", /shut down/);
    cluster.startExecutor(["--queues", "drain2"]);
    const retried = await waitForJob(cluster.api, second.id);
    assert.equal(retried.state, "completed");
    assert.equal(retried.attempt, 2);
  });

  it("never runs one job on two executors", async () => {
    cluster.startExecutor(["--max-jobs", "3"]);
    cluster.startExecutor(["--max-jobs", "3"]);
    const ids: number[] = [];
    for (let index = 0; index < 24; index += 1) {
      ids.push((await cluster.api.submit({ isolation: "none", steps: [{ key: "s", commands: ["echo ran-$AIRLOCK_JOB_ID-$AIRLOCK_ATTEMPT", "sleep 0.05"] }] })).id);
    }
    const jobs = await Promise.all(ids.map((id) => waitForJob(cluster.api, id, undefined, 60_000)));
    assert.ok(jobs.every((job) => job.state === "completed"));
    assert.ok(jobs.every((job) => job.attempt === 1), "each job claimed exactly once");
    const executors = new Set(jobs.map((job) => job.executorName));
    assert.ok(executors.size >= 2, `work spread over executors: ${[...executors].join(", ")}`);
    for (const job of jobs) assert.equal(await logText(cluster.api, job, "s"), `ran-${job.id}-1\n`);
  });
});
