/**
 * A SQLite coordinator SIGKILLed mid-job and restarted on the same data dir and port: the
 * executor keeps its lease through the outage, its log shipper resends what the dead process had
 * not stored, and the stored log equals, byte for byte, what the step printed (a pseudo-random
 * stream the test predicts, printed in bursts before, during and after the outage).
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { attemptLog, expectedStream, printFigures, sha256, sleep, streamCommand, until } from "./helpers.ts";

describe("fault: SQLite coordinator SIGKILLed mid-job", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startCluster({ executors: 1, coordinatorArgs: ["--lease-timeout", "5s"] });
  });
  after(async () => {
    await cluster?.close();
  });

  it("completes the job after a restart on the same data dir, its stored log byte for byte what the step printed", async (t) => {
    const stream = { seed: 4242, lines: 3000, width: 90, burst: 100, pauseSeconds: 0.15 };
    const expected = expectedStream(stream);
    const submitted = await cluster.api.submit({ isolation: "none", steps: [{ key: "stream", commands: [streamCommand(stream)] }] });
    const storedBeforeKill = await until("a fifth of the stream is stored", async () => {
      const size = (await cluster.api.getJob(submitted.id)).steps[0]?.size ?? 0;
      return size > expected.length / 5 ? size : undefined;
    });
    cluster.coordinator.child.kill("SIGKILL");
    await cluster.coordinator.exited;
    const killedAt = Date.now();
    await sleep(1500);
    await cluster.restartCoordinator();
    const downMs = Date.now() - killedAt;
    const job = await waitForJob(cluster.api, submitted.id, undefined, 90_000);
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    assert.equal(job.attempt, 1, "the executor kept its lease through the restart");
    const stored = (await attemptLog(cluster.coordinator.url, cluster.coordinator.apiToken, submitted.id, "stream", 1)).text;
    assert.ok(storedBeforeKill < expected.length * 0.9, "the kill landed while the step was still printing");
    assert.equal(stored.length, expected.length, "stored log length");
    assert.equal(sha256(stored), sha256(expected), "stored log checksum");
    assert.ok(stored === expected, "stored log byte for byte");

    const db = new DatabaseSync(join(cluster.coordinator.dataDir, "airlock.db"), { readOnly: true });
    try {
      assert.equal((db.prepare("PRAGMA integrity_check").get() as { integrity_check: string }).integrity_check, "ok");
    } finally {
      db.close();
    }
    printFigures(t, "SQLite coordinator SIGKILL mid-job", {
      printed_bytes: expected.length,
      stored_bytes: stored.length,
      stored_at_kill: storedBeforeKill,
      sha256_match: "yes",
      coordinator_down_ms: downMs,
      attempts: job.attempt,
      jobs_lost: 0,
      duplicates: 0,
    });
  });
});
