/**
 * The coordinator's disk filling up: its data dir is a small tmpfs this test mounts (root only),
 * which the test fills with a file while a job is running. Writes are then refused with a clear
 * 507 naming the disk (not a 500), reads go on, the SQLite file stays sound, and once the file is
 * removed the running job finishes with its whole log and new jobs run.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { rm } from "node:fs/promises";
import { userInfo } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, it } from "node:test";
import { ApiClient } from "../../src/cli/api-client.ts";
import { startAirlock, startLocalCoordinator, type LocalCoordinator, type ManagedProcess } from "../../src/cli/local-cluster.ts";
import { baseEnv, ENTRY, logText, tempDir, waitForJob } from "../helpers/cluster.ts";
import { expectedStream, printFigures, sha256, streamCommand } from "./helpers.ts";

const SIZE = "16m";
const skip = userInfo().uid === 0 ? undefined : "mounting a tmpfs for the coordinator's data dir needs root";

/** Fills the filesystem holding `path` with one file; returns the bytes written. */
function fill(path: string): number {
  const fd = openSync(path, "w");
  let written = 0;
  try {
    for (const size of [1 << 20, 1 << 12, 1 << 9]) {
      const block = Buffer.alloc(size, 1);
      for (;;) {
        try {
          written += writeSync(fd, block);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}

function integrity(dataDir: string): string {
  const db = new DatabaseSync(join(dataDir, "airlock.db"), { readOnly: true });
  try {
    return (db.prepare("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check;
  } finally {
    db.close();
  }
}

describe("fault: the coordinator's disk fills up", { skip }, () => {
  let dir: string;
  let mount: string;
  let mounted = false;
  let coordinator: LocalCoordinator;
  let executor: ManagedProcess;
  let api: ApiClient;

  before(async () => {
    if (skip) return;
    dir = await tempDir("airlock-disk-full-");
    mount = join(dir, "coordinator-data");
    mkdirSync(mount);
    const result = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${SIZE},mode=0700`, "tmpfs", mount], { encoding: "utf8" });
    if (result.status !== 0) throw new Error(`mount -t tmpfs failed: ${result.stderr}`);
    mounted = true;
    coordinator = await startLocalCoordinator({ entry: ENTRY, dataDir: mount, env: baseEnv, logFile: join(dir, "coordinator.log"), extraArgs: ["--lease-timeout", "10s"] });
    executor = startAirlock(
      ENTRY,
      ["executor", "run", "--url", coordinator.url, "--runtime", "shell", "--data", join(dir, "executor"), "--heartbeat-interval", "500ms", "--name", "disk-full-executor", "--log-format", "json"],
      { env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: coordinator.executorToken }, logFile: join(dir, "executor.log") },
    );
    api = new ApiClient({ url: coordinator.url, token: coordinator.apiToken });
  });

  after(async () => {
    await executor?.stop(5000);
    await coordinator?.stop(5000);
    await api?.close();
    if (mounted) spawnSync("umount", [mount]);
    if (dir && !process.env.AIRLOCK_KEEP_TEST_DIR) await rm(dir, { recursive: true, force: true });
  });

  it("refuses writes with 507 naming the disk, keeps what is stored, and recovers once space is freed", async (t) => {
    const earlier = await waitForJob(api, (await api.submit({ isolation: "none", steps: [{ key: "hello", commands: ["echo stored before the disk filled"] }] })).id);
    assert.equal(earlier.state, "completed");

    const stream = { seed: 99, lines: 1200, width: 80, burst: 40, pauseSeconds: 0.1 };
    const running = await api.submit({ isolation: "none", steps: [{ key: "stream", commands: [streamCommand(stream)] }] });
    await waitForJob(api, running.id, (job) => (job.steps[0]?.size ?? 0) > 10_000);

    const filler = join(mount, "filler");
    const filled = fill(filler);
    // SQLite may still have room in pages it holds: keep writing until the disk says no.
    const big = "x".repeat(256 * 1024);
    let refusal: { status: number; body: { error?: { code?: string; message?: string } } } | undefined;
    let accepted = 0;
    for (let index = 0; index < 200 && !refusal; index += 1) {
      const response = await fetch(`${coordinator.url}/api/jobs`, {
        method: "POST",
        headers: { authorization: `Bearer ${coordinator.apiToken}`, "content-type": "application/json" },
        body: JSON.stringify({ queue: "never-served", isolation: "none", steps: [{ commands: [`: ${big}`] }] }),
      });
      const body = (await response.json()) as { error?: { code?: string; message?: string } };
      if (response.status === 200 || response.status === 201) accepted += 1;
      else refusal = { status: response.status, body };
    }
    assert.ok(refusal, `the full disk refused a write (${accepted} accepted)`);
    assert.equal(refusal.status, 507, JSON.stringify(refusal.body));
    assert.equal(refusal.body.error?.code, "insufficient_storage");
    assert.match(refusal.body.error?.message ?? "", /disk is full/);
    assert.doesNotMatch(JSON.stringify(refusal.body), /at .*\.ts:\d+/, "no stack trace in the answer");

    // Reads go on, and what was stored is intact.
    assert.equal(await logText(api, await api.getJob(earlier.id), "hello"), "stored before the disk filled\n");
    assert.equal((await fetch(`${coordinator.url}/healthz`)).status, 200);
    assert.equal(integrity(mount), "ok", "integrity_check while full");
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal((await api.getJob(running.id)).state, "processing", "the running job waits out the full disk");

    await rm(filler);
    const done = await waitForJob(api, running.id, undefined, 90_000);
    assert.equal(done.state, "completed", done.failureMessage ?? "");
    assert.equal(done.attempt, 1);
    const stored = await logText(api, done, "stream");
    const expected = expectedStream(stream);
    assert.equal(sha256(stored), sha256(expected), "the running job's log is whole, byte for byte, after the disk filled mid-stream");
    const fresh = await waitForJob(api, (await api.submit({ isolation: "none", steps: [{ key: "after", commands: ["echo space again"] }] })).id);
    assert.equal(fresh.state, "completed");
    assert.equal(await logText(api, fresh, "after"), "space again\n");
    assert.equal(integrity(mount), "ok", "integrity_check after recovery");
    assert.equal(coordinator.child.exitCode, null, "the coordinator never went down");
    const coordinatorLog = readFileSync(join(dir, "coordinator.log"), "utf8").split("\n");
    assert.deepEqual(coordinatorLog.filter((line) => line.includes('"level":50')), [], "no request failed as an internal error");
    const refused = coordinatorLog.filter((line) => line.includes("request refused") && line.includes("disk is full")).length;
    printFigures(t, "coordinator disk full", {
      tmpfs: SIZE,
      filler_bytes: filled,
      writes_accepted_after_fill: accepted,
      refusal: `${refusal.status} ${refusal.body.error?.code}`,
      requests_refused: refused,
      integrity: "ok",
      running_job_log_bytes: stored.length,
      jobs_lost: 0,
      recovered: "yes",
    });
  });
});
