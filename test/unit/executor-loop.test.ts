/**
 * The executor's poll loop against a fake coordinator client (a boundary we own), with the real
 * shell runtime: concurrency, heartbeats (lost and canceled jobs), draining and shutdown.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { systemClock } from "../../src/common/clock.ts";
import { silentLogger } from "../../src/common/logger.ts";
import type { CoordinatorClient, JobClient } from "../../src/executor/client.ts";
import { resolveExecutorConfig } from "../../src/executor/config.ts";
import { Executor } from "../../src/executor/executor.ts";
import { JobSpecInput, type AttemptOutcome, type DequeueRequest, type HeartbeatRequest, type HeartbeatResponse, type JobPayload } from "../../src/protocol/index.ts";
import { ShellRuntime } from "../../src/runtimes/shell/index.ts";

class FakeCoordinator implements CoordinatorClient {
  readonly currentUrl = "http://fake";
  queue: JobPayload[] = [];
  maxConcurrent = 0;
  running = new Set<number>();
  finished = new Map<number, { outcome: AttemptOutcome; message: string | undefined }>();
  stepsStarted: string[] = [];
  heartbeats: HeartbeatRequest[] = [];
  heartbeatReply: (request: HeartbeatRequest) => HeartbeatResponse = (request) => ({ knownIds: request.jobIds, cancelIds: [] });
  private waiters: (() => void)[] = [];

  push(job: JobPayload): void {
    this.queue.push(job);
    for (const wake of this.waiters.splice(0)) wake();
  }

  async authCheck() {
    return { version: "fake", leaseMs: 20_000 };
  }

  async dequeue(_body: DequeueRequest, signal: AbortSignal): Promise<JobPayload | undefined> {
    if (this.queue.length === 0) {
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        signal.addEventListener("abort", () => resolve(), { once: true });
        setTimeout(resolve, 200);
      });
    }
    if (signal.aborted) return undefined;
    const job = this.queue.shift();
    if (job) {
      this.running.add(job.id);
      this.maxConcurrent = Math.max(this.maxConcurrent, this.running.size);
    }
    return job;
  }

  async heartbeat(body: HeartbeatRequest): Promise<HeartbeatResponse> {
    this.heartbeats.push(body);
    return this.heartbeatReply(body);
  }

  forJob(job: JobPayload): JobClient {
    return {
      appendLog: async (_key, offset, data) => ({ size: offset + data.byteLength, cancel: false }),
      startStep: async (key) => {
        this.stepsStarted.push(`${job.id}:${key}`);
      },
      finishStep: async () => undefined,
      uploadArtifact: async () => undefined,
      finish: async (outcome, message) => {
        this.running.delete(job.id);
        this.finished.set(job.id, { outcome, message });
      },
      gitRemote: () => ({ url: "http://fake/git", authHeader: "Authorization: Bearer x" }),
    };
  }

  async close(): Promise<void> {}
}

function job(id: number, commands: string[]): JobPayload {
  return {
    id,
    attempt: 1,
    token: `ajt_${"x".repeat(40)}${id}`,
    queue: "default",
    spec: JobSpecInput.parse({ isolation: "none", steps: [{ key: "run", commands }] }),
    repository: null,
    leaseMs: 20_000,
  };
}

async function until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function withExecutor(maxJobs: number, fn: (fake: FakeCoordinator, executor: Executor, dataDir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "airlock-loop-"));
  const config = resolveExecutorConfig(
    { token: "aet_fake", maxJobs: String(maxJobs), data: dir, heartbeatInterval: "100ms", name: "loop-test" },
    { PATH: process.env.PATH },
  );
  const fake = new FakeCoordinator();
  const executor = new Executor({ config, client: fake, runtime: new ShellRuntime({ path: process.env.PATH ?? "/usr/bin:/bin" }), logger: silentLogger, clock: systemClock });
  try {
    await executor.start();
    await fn(fake, executor, dir);
  } finally {
    executor.cancelAll();
    await executor.drain();
    await rm(dir, { recursive: true, force: true });
  }
}

describe("executor poll loop", () => {
  it("runs at most --max-jobs jobs at once and reports each", async () => {
    await withExecutor(2, async (fake) => {
      for (let id = 1; id <= 5; id += 1) fake.push(job(id, ["sleep 0.3"]));
      await until(() => fake.finished.size === 5, "5 jobs to finish");
      assert.equal(fake.maxConcurrent, 2);
      assert.ok([...fake.finished.values()].every((result) => result.outcome === "completed"));
    });
  });

  it("heartbeats the running jobs and stops a job the coordinator no longer knows, without reporting it", async () => {
    await withExecutor(1, async (fake, executor) => {
      fake.heartbeatReply = (request) => ({ knownIds: request.jobIds.filter((id) => id !== 7), cancelIds: [] });
      fake.push(job(7, ["sleep 30"]));
      await until(() => fake.heartbeats.some((beat) => beat.jobIds.includes(7)), "a heartbeat naming job 7");
      await until(() => executor.runningJobIds.length === 0, "job 7 to be dropped");
      assert.equal(fake.finished.has(7), false, "a lost attempt is not ours to report");
    });
  });

  it("rewrites <data>/heartbeat after each accepted heartbeat, and leaves it alone while they fail", async () => {
    await withExecutor(1, async (fake, _executor, dir) => {
      const file = join(dir, "heartbeat");
      await until(() => fake.heartbeats.length >= 2, "two heartbeats");
      assert.match(await readFile(file, "utf8"), /^\d{4}-\d\d-\d\dT[\d:.]+Z heartbeat accepted by http:\/\/fake\n$/);
      const before = (await stat(file)).mtimeMs;
      await until(() => fake.heartbeats.length >= 4, "two more heartbeats");
      assert.ok((await stat(file)).mtimeMs > before, "each accepted heartbeat rewrites the file");
      fake.heartbeatReply = () => {
        throw new Error("coordinator unreachable");
      };
      const failing = fake.heartbeats.length;
      // Two failed beats first: a write of the last accepted one may still be under way.
      await until(() => fake.heartbeats.length > failing + 1, "two failed heartbeats");
      const stale = (await stat(file)).mtimeMs;
      await until(() => fake.heartbeats.length > failing + 3, "two more failed heartbeats");
      assert.equal((await stat(file)).mtimeMs, stale, "a failed heartbeat does not freshen the file");
    });
  });

  it("cancels the jobs in cancelIds and reports them so the coordinator records the cancel", async () => {
    await withExecutor(1, async (fake) => {
      fake.heartbeatReply = (request) => ({ knownIds: request.jobIds, cancelIds: request.jobIds.filter((id) => id === 8) });
      fake.push(job(8, ["sleep 30"]));
      await until(() => fake.finished.has(8), "job 8 to end");
      assert.deepEqual(fake.finished.get(8), { outcome: "failed", message: "canceled" });
    });
  });

  it("drains: stops dequeuing, lets the running job finish", async () => {
    await withExecutor(1, async (fake, executor) => {
      fake.push(job(9, ["sleep 0.5", "echo done"]));
      await until(() => fake.stepsStarted.includes("9:run"), "job 9 to start");
      fake.push(job(10, ["true"]));
      await executor.drain();
      assert.equal(fake.finished.get(9)?.outcome, "completed");
      assert.equal(fake.finished.has(10), false, "no job is taken while draining");
      assert.equal(fake.queue.length, 1);
    });
  });

  it("on shutdown reports running jobs as errored, so they are retried elsewhere", async () => {
    await withExecutor(1, async (fake, executor) => {
      fake.push(job(11, ["sleep 30"]));
      await until(() => fake.stepsStarted.includes("11:run"), "job 11 to start");
      executor.cancelAll();
      await executor.drain();
      assert.equal(fake.finished.get(11)?.outcome, "errored");
    });
  });
});
