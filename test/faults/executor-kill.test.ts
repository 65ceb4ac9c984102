/**
 * An executor SIGKILLed mid-job, for each runtime that leaves something behind when its executor
 * dies (shell: the step's processes; bwrap: the job's cgroup, its processes having died with the
 * executor; docker: the container). The coordinator reclaims the job within the lease; an executor started on the dead
 * one's data dir reaps the leftovers before it takes work, and completes the job as attempt 2;
 * the first attempt's log is kept and readable.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { detectCgroups } from "../../src/runtimes/bwrap/cgroup-detect.ts";
import { Cgroups } from "../../src/runtimes/bwrap/cgroups.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { DockerClient } from "../../src/runtimes/docker/client.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { LABEL } from "../../src/runtimes/labels.ts";
import { findMarked } from "../../src/runtimes/shell/process-tree.ts";
import { bwrapUnavailable, TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";
import { logText, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { dockerUnavailable, IMAGES, SOCKET } from "../runtimes/docker-target.ts";
import { attemptLog, printFigures, until } from "./helpers.ts";

const LEASE_MS = 3000;

/** Processes in a cgroup (any hierarchy) whose name starts with `prefix`. */
async function processesInGroup(prefix: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir("/proc")) {
    if (/^\d+$/.test(name) && (await readFile(`/proc/${name}/cgroup`, "utf8").catch(() => "")).includes(`/${prefix}`)) found.push(`process ${name}`);
  }
  return found;
}

/** The attempt's cgroups (bwrap kills the sandbox's processes with the executor; its cgroup stays). */
async function bwrapGroupsOf(prefix: string): Promise<string[]> {
  const layout = await detectCgroups();
  if ("problem" in layout) return [];
  return (await (await Cgroups.prepare(layout)).list()).filter((name) => name.startsWith(prefix)).map((name) => `cgroup ${name}`);
}

/** Containers of the job made by the executor of that pid. */
async function containersOf(jobId: number, executorPid: number): Promise<string[]> {
  const client = new DockerClient({ socketPath: SOCKET });
  try {
    return (await client.list([`${LABEL.job}=${jobId}`, `${LABEL.executorPid}=${executorPid}`])).map((container) => `${container.Names?.[0] ?? container.Id} (${container.State ?? "?"})`);
  } finally {
    await client.close();
  }
}

interface RuntimeCase {
  runtime: string;
  isolation: string;
  executorArgs: string[];
  image?: string;
  skip: () => Promise<string | undefined>;
  /** What attempt 1 of the job, run by the executor of that pid, left on the host (other test runs may have jobs of the same id). */
  leftovers: (jobId: number, executorPid: number) => Promise<string[]>;
}

const CASES: RuntimeCase[] = [
  {
    runtime: "shell",
    isolation: "none",
    executorArgs: [],
    skip: async () => undefined,
    leftovers: async (jobId, pid) => findMarked((marker) => marker === `shell-${jobId}-1-${pid}`).map(String),
  },
  {
    runtime: "bwrap",
    isolation: "namespace",
    executorArgs: ["--images", TEST_IMAGES],
    image: "airlock-test/busybox",
    skip: async () => testImagesMissing() ?? (await bwrapUnavailable()),
    leftovers: async (jobId, pid) => {
      const group = `job-${jobId}-1.pid-${pid}.`;
      return [...(await processesInGroup(group)), ...(await bwrapGroupsOf(group))];
    },
  },
  {
    runtime: "docker",
    isolation: "container",
    executorArgs: ["--docker-host", SOCKET],
    image: IMAGES.primary,
    skip: () => dockerUnavailable(new DockerRuntime({ host: SOCKET, logger: silentLogger })),
    leftovers: async (jobId, pid) => containersOf(jobId, pid),
  },
];

/** A log without the executor's own `[airlock] ...` notices (image unpacked, etc.). */
const withoutNotices = (text: string): string => text.replace(/^\[airlock\] .*\n/gm, "");

describe("fault: executor SIGKILLed mid-job", { concurrency: false }, () => {
  const clusters: Cluster[] = [];
  after(async () => {
    for (const cluster of clusters) await cluster.close();
  });

  for (const runtime of CASES) {
    it(`${runtime.runtime}: reclaimed within the lease, completed by the next executor, first log kept, leftovers reaped`, async (t) => {
      const reason = await runtime.skip();
      if (reason) return t.skip(`${runtime.runtime} runtime unavailable: ${reason}`);
      const cluster = await startCluster({ runtime: runtime.runtime, executors: 0, executorArgs: runtime.executorArgs, coordinatorArgs: ["--lease-timeout", `${LEASE_MS}ms`] });
      clusters.push(cluster);
      const dataDir = join(cluster.dir, "executor-data");
      const doomed = cluster.startExecutor(["--data", dataDir]);
      const submitted = await cluster.api.submit({
        isolation: runtime.isolation,
        maxAttempts: 2,
        steps: [
          {
            key: "work",
            ...(runtime.image ? { image: runtime.image } : {}),
            commands: [
              'echo "attempt $AIRLOCK_ATTEMPT"',
              // The first attempt leaves a background process and never ends by itself.
              'if [ "$AIRLOCK_ATTEMPT" = 1 ]; then sleep 300 & i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done; fi',
              "echo finished",
            ],
          },
        ],
      });
      await until("the first attempt printed ticks", async () => /tick 2\n/.test((await attemptLog(cluster.coordinator.url, cluster.coordinator.apiToken, submitted.id, "work", 1)).text), 120_000);
      doomed.child.kill("SIGKILL");
      await doomed.exited;
      const killedAt = Date.now();
      const doomedPid = doomed.child.pid as number;
      const left = await runtime.leftovers(submitted.id, doomedPid);
      assert.ok(left.length > 0, "the dead executor left its sandbox behind (else this case proves nothing)");

      // No executor runs now: only the coordinator's lease reaper can hand the job back.
      const reclaimed = await waitForJob(cluster.api, submitted.id, (job) => job.state === "queued", LEASE_MS * 3);
      const reclaimMs = Date.now() - killedAt;
      assert.match(reclaimed.failureMessage ?? "", /lease|heartbeat/i, "the requeue says why");
      // The lease runs from the last heartbeat; the reaper looks every lease/4.
      assert.ok(reclaimMs <= LEASE_MS + LEASE_MS / 4 + 1000, `reclaimed ${reclaimMs} ms after the kill, lease ${LEASE_MS} ms`);

      const stored = await attemptLog(cluster.coordinator.url, cluster.coordinator.apiToken, submitted.id, "work", 1);
      assert.equal(stored.status, 200);
      assert.match(stored.text, /^(\[airlock\] .*\n)*attempt 1\n(tick \d+\n)+$/, "the first attempt's log is kept as it was shipped");
      const ticks = [...stored.text.matchAll(/tick (\d+)/g)].map((match) => Number(match[1]));
      assert.deepEqual(
        ticks,
        ticks.map((_, index) => index),
        "every shipped tick once, in order",
      );

      const restartedAt = Date.now();
      const successor = cluster.startExecutor(["--data", dataDir, "--name", `${runtime.runtime}-successor`]);
      let remaining: string[] = [];
      const reaped = await until(
        "the dead executor's sandbox is gone",
        async () => {
          remaining = await runtime.leftovers(submitted.id, doomedPid);
          return remaining.length === 0 ? Date.now() - restartedAt : undefined;
        },
        20_000,
      ).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}; left: ${remaining.join("; ")}; successor log: ${readFileSync(successor.logFile, "utf8").slice(-3000)}`);
      });
      const done = await waitForJob(cluster.api, submitted.id, undefined, 120_000);
      assert.equal(done.state, "completed", done.failureMessage ?? "");
      assert.equal(done.attempt, 2);
      assert.equal(done.executorName, `${runtime.runtime}-successor`);
      assert.equal(withoutNotices(await logText(cluster.api, done, "work")), "attempt 2\nfinished\n", "the second attempt ran the step once, whole");
      assert.equal((await attemptLog(cluster.coordinator.url, cluster.coordinator.apiToken, submitted.id, "work", 1)).text, stored.text, "attempt 1's log unchanged by attempt 2");
      assert.equal(successor.child.exitCode, null);
      printFigures(t, `executor SIGKILL (${runtime.runtime})`, {
        lease_ms: LEASE_MS,
        reclaim_ms: reclaimMs,
        leftovers_before: left.length,
        leftovers_after: 0,
        reaped_within_ms_of_restart: reaped,
        attempt1_log_bytes: stored.text.length,
        jobs_lost: 0,
        duplicates: 0,
      });
    });
  }
});
