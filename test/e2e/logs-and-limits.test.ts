/** Live logs, the log cap, large output, and the limits the executor enforces itself (time, disk). */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { LogEvent } from "../../src/protocol/index.ts";
import { logText, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

describe("logs and limits", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ executors: 0 });
    cluster.startExecutor(["--max-jobs", "2"]);
    cluster.startExecutor(["--queues", "capped", "--log-cap", "64k"]);
  });
  after(async () => {
    await cluster.close();
  });

  it("streams log lines live over server-sent events while the step runs", async () => {
    const submitted = await cluster.api.submit({
      isolation: "none",
      steps: [{ key: "ticks", commands: ["for i in 1 2 3 4 5 6 7 8; do echo tick-$i; sleep 0.25; done"] }],
    });
    const seen: { text: string; whileRunning: boolean }[] = [];
    let text = "";
    for await (const event of cluster.api.events(submitted.id)) {
      if (event.event === "log") {
        const log = LogEvent.parse(JSON.parse(event.data));
        text += log.text;
        const job = await cluster.api.getJob(submitted.id);
        seen.push({ text: log.text, whileRunning: job.state === "processing" });
      }
      if (event.event === "end") break;
    }
    assert.ok(seen.filter((event) => event.text.includes("tick") && event.whileRunning).length >= 3, "lines arrive while the job still runs");
    assert.equal(text.match(/tick-\d/g)?.join(","), "tick-1,tick-2,tick-3,tick-4,tick-5,tick-6,tick-7,tick-8");
  });

  it("resumes a stream at the offsets a client already has", async () => {
    const submitted = await cluster.api.submit({ isolation: "none", steps: [{ key: "words", commands: ["echo alpha", "echo beta"] }] });
    await waitForJob(cluster.api, submitted.id);
    let resumed = "";
    for await (const event of cluster.api.events(submitted.id, { from: "words:6" })) {
      if (event.event === "log") resumed += (JSON.parse(event.data) as LogEvent).text;
      if (event.event === "end") break;
    }
    assert.equal(resumed.includes("alpha"), false);
    assert.ok(resumed.endsWith("beta\n"), resumed);
  });

  it("stores large output whole, byte for byte", async () => {
    const submitted = await cluster.api.submit({ isolation: "none", steps: [{ key: "big", commands: ["yes 0123456789abcdef | head -c 8388608"] }] });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 60_000);
    assert.equal(job.state, "completed");
    assert.equal(job.steps[0]?.size, 8 * 1024 * 1024);
    const expected = "0123456789abcdef\n".repeat(8 * 1024 * 1024 / 17 + 1).slice(0, 8 * 1024 * 1024);
    const log = await cluster.api.readLog(job.id, "big");
    assert.equal(log.length, expected.length);
    assert.ok(log.equals(Buffer.from(expected)), "every byte as produced");
  });

  it("keeps the head and the tail past the per-job log cap and states the gap", async () => {
    const submitted = await cluster.api.submit({
      queue: "capped",
      isolation: "none",
      steps: [{ key: "flood", commands: ["i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done"] }],
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 60_000);
    assert.equal(job.state, "completed");
    const log = await logText(cluster.api, job, "flood");
    assert.ok(log.startsWith("line-0\nline-1\n"), "the head is kept");
    assert.ok(log.endsWith("line-19998\nline-19999\n"), "the tail is kept");
    assert.match(log, /\[airlock\] \d+ bytes omitted here \(log cap\)/);
    assert.ok(log.length < 70 * 1024, `stored ${log.length} bytes for a 64 KiB cap`);
  });

  it("kills a step at its timeout, and a job at its timeout, naming the limit", async () => {
    const step = await cluster.api.submit({ isolation: "none", steps: [{ key: "slow", commands: ["sleep 60"], timeout: "1s" }, { key: "never", commands: ["true"] }] });
    const job = await cluster.api.submit({ isolation: "none", timeout: "2s", steps: [{ key: "a", commands: ["sleep 1"] }, { key: "b", commands: ["sleep 60"] }] });
    const [stepped, timed] = await Promise.all([waitForJob(cluster.api, step.id), waitForJob(cluster.api, job.id)]);
    assert.equal(stepped.state, "failed");
    assert.match(stepped.failureMessage ?? "", /step slow hit its timeout of 1/);
    assert.equal(stepped.steps[1]?.state, "skipped");
    assert.equal(timed.state, "failed");
    assert.match(timed.failureMessage ?? "", /job hit its timeout of 2/);
    assert.equal(timed.steps[0]?.state, "completed");
  });

  it("stops a step that writes past the workspace disk limit", async () => {
    const submitted = await cluster.api.submit({
      isolation: "none",
      resources: { disk: "1m" },
      steps: [{ key: "fill", commands: ["head -c 8388608 /dev/zero > fill.bin", "sleep 30"] }],
    });
    const job = await waitForJob(cluster.api, submitted.id);
    assert.equal(job.state, "failed");
    assert.match(job.failureMessage ?? "", /disk limit of 1\.0MiB/);
  });
});
