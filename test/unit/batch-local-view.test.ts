/**
 * The local batch mode's pieces that need no sandbox: the in-process job client (offsets, listener,
 * artifacts), the progress view (terminal frame and plain lines), diff stats, output paths.
 */
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import { diffStat } from "../../src/cli/batch-local/diff-stat.ts";
import { LocalCoordinatorClient, LocalJob } from "../../src/cli/batch-local/job-client.ts";
import { printable, ProgressView } from "../../src/cli/batch-local/progress.ts";
import { outPath } from "../../src/cli/batch-local/results.ts";
import { localPayload } from "../../src/cli/batch-local/runner.ts";
import { JobSpecInput } from "../../src/protocol/index.ts";

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
  return { stream, text: () => text };
}

const DIFF = [
  "diff --git a/a.txt b/a.txt",
  "index 1111111..2222222 100644",
  "--- a/a.txt",
  "+++ b/a.txt",
  "@@ -1,3 +1,3 @@",
  " keep",
  "--- removed line that looks like a header",
  "+++ added line that looks like a header",
  " keep",
  "diff --git a/new.txt b/new.txt",
  "new file mode 100644",
  "--- /dev/null",
  "+++ b/new.txt",
  "@@ -0,0 +1,2 @@",
  "+one",
  "+two",
  "\\ No newline at end of file",
  "",
].join("\n");

describe("batch run --local: pieces", () => {
  it("counts files and lines of a diff by its hunk headers", () => {
    assert.deepEqual(diffStat(DIFF), { files: 2, added: 3, deleted: 1 });
    assert.deepEqual(diffStat(""), { files: 0, added: 0, deleted: 0 });
  });

  it("keeps a job's log by offset (a retried append is stored once), its artifacts and outcome", async () => {
    const spec = JobSpecInput.parse({ repository: "acme/a", steps: [{ commands: ["true"] }], outputs: { diff: true } });
    const payload = localPayload({ id: 7, repository: "acme/a", commit: "a".repeat(40), spec });
    assert.equal(payload.repository?.gitPath, "/.executors/git/acme/a");
    assert.ok(payload.token.length >= 32);
    const seen: string[] = [];
    const job = new LocalJob(payload, { url: "http://127.0.0.1:1/.executors/git/acme/a", authHeader: "Authorization: Bearer t" }, {
      onEntryStart: (_job, key) => seen.push(`start ${key}`),
      onLog: (_job, key, data) => seen.push(`${key}: ${data.toString()}`),
      onEntryFinish: (_job, entry) => seen.push(`finish ${entry.key} ${entry.state}`),
    });
    const coordinator = new LocalCoordinatorClient("http://127.0.0.1:1");
    coordinator.register(job);
    const client = coordinator.forJob(payload);
    await client.startStep("step-1");
    assert.deepEqual(await client.appendLog("step-1", 0, Buffer.from("hello ")), { size: 6, cancel: false });
    assert.deepEqual(await client.appendLog("step-1", 0, Buffer.from("hello ")), { size: 6, cancel: false });
    assert.deepEqual(await client.appendLog("step-1", 6, Buffer.from("world\n")), { size: 12, cancel: false });
    await assert.rejects(client.appendLog("step-1", 20, Buffer.from("gap")), /gap/);
    job.cancelRequested = true;
    assert.equal((await client.appendLog("step-1", 12, Buffer.from("x"))).cancel, true);
    await client.finishStep("step-1", { exitCode: 0, durationMs: 5, state: "completed" });
    await client.uploadArtifact("diff", (async function* () {
      yield Buffer.from("diff ");
      yield Buffer.from("text");
    })());
    await client.finish("completed");
    assert.equal(job.log("step-1").toString(), "hello world\nx");
    assert.equal(job.artifacts.get("diff")?.toString(), "diff text");
    assert.equal(job.outcome, "completed");
    assert.deepEqual(seen, ["start step-1", "step-1: hello ", "step-1: world\n", "step-1: x", "finish step-1 completed"]);
    assert.equal(client.gitRemote().authHeader, "Authorization: Bearer t");
    await assert.rejects(coordinator.heartbeat(), /no heartbeats/);
  });

  it("prints plain lines off a terminal: starts, prefixed log lines, ends with the diff size", () => {
    const out = capture();
    let now = 1000;
    const view = new ProgressView(out.stream, { tty: false, title: "batch demo: 2 jobs", now: () => now });
    view.add({ id: 1, repository: "acme/a", workspace: "." });
    view.add({ id: 2, repository: "acme/mono", workspace: "packages/x" });
    view.setState(1, "running");
    view.step(1, "rewrite");
    view.log(1, Buffer.from("first line\nsecond "));
    view.log(1, Buffer.from("part\nunfinished"));
    now = 2500;
    view.setState(1, "completed", { stat: { files: 2, added: 3, deleted: 1 } });
    view.setState(2, "running");
    view.setState(2, "failed", { message: "step rewrite exited with code 1" });
    view.close();
    assert.equal(
      out.text(),
      [
        "batch demo: 2 jobs",
        "acme/a: started",
        "acme/a [rewrite] | first line",
        "acme/a [rewrite] | second part",
        "acme/a [rewrite] | unfinished",
        "[1/2] acme/a: completed in 1.50s: 2 files changed, +3 -1",
        "acme/mono:packages/x: started",
        "[2/2] acme/mono:packages/x: failed in 0ms: step rewrite exited with code 1",
        "",
      ].join("\n"),
    );
  });

  it("draws a terminal frame fitted to its size, running and failed rows first", () => {
    const out = capture();
    const view = new ProgressView(out.stream, { tty: true, title: "batch big", now: () => 5000 });
    for (let id = 1; id <= 30; id += 1) view.add({ id, repository: `acme/r${id}`, workspace: "." });
    for (let id = 1; id <= 20; id += 1) {
      view.setState(id, "running");
      view.setState(id, "completed", { stat: { files: 1, added: 1, deleted: 1 } });
    }
    view.setState(21, "running");
    view.step(21, "rewrite");
    view.log(21, Buffer.from("\x1b[31mcolored\x1b[0m output\twith tab\n"));
    view.setState(22, "running");
    view.setState(22, "failed", { message: "boom" });
    const frame = view.frame(80, 8);
    view.close();
    assert.equal(frame.length, 8);
    assert.ok(frame.every((line) => line.length <= 79), frame.join("\n"));
    assert.equal(frame[0], "batch big");
    assert.match(frame[1] ?? "", /^REPOSITORY\s+STATE\s+STEP/);
    assert.match(frame.join("\n"), /acme\/r21\s+running\s+rewrite/);
    assert.match(frame.join("\n"), /acme\/r22\s+failed/);
    assert.match(frame.at(-1) ?? "", /^20 completed, 1 failed, 1 running, 8 queued \(25 rows not shown\)$/);
    assert.ok(out.text().includes("\x1b[J"), "the frame clears below itself");
    assert.equal(printable("\x1b[31mred\x1b[0m\tx\x07"), "red  x");
  });

  it("puts --no-upload files at <out>/<repository>[/<workspace>]", () => {
    assert.equal(outPath("/o", { repository: "acme/a", workspace: "." }, "diff"), "/o/acme/a.diff");
    assert.equal(outPath("/o", { repository: "acme/mono", workspace: "packages/x" }, "log"), "/o/acme/mono/packages/x.log");
  });
});
