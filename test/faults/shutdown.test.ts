/**
 * Executors stopping and racing, with real processes: SIGTERM drains (a second SIGTERM hands the
 * running job back), and two executors polling the same queue never claim one job twice.
 * (SIGKILL and SIGSTOP of an executor, and a coordinator crash, are in their own files here.)
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { logText, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

describe("fault: executor shutdown and claim races", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ executors: 0 });
  });
  after(async () => {
    await cluster.close();
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
