/**
 * `airlock batch ...` as users run it (bin/airlock, no TTY: plain lines), against a real
 * coordinator and shell executor: preview (exit 1 when an entry failed), list, show (table and
 * JSON), diff, logs, retry --failed, cancel, apply --repo.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { BatchView } from "../../src/protocol/batch.ts";
import { BIN, baseEnv, makeRepo, startCluster, type Cluster } from "../helpers/cluster.ts";
import { git } from "./helpers.ts";

/** Runs the CLI without blocking this process's event loop. */
function airlock(env: Record<string, string | undefined>, cwd: string, ...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(BIN, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

describe("airlock batch CLI", { timeout: 180_000 }, () => {
  let cluster: Cluster;
  let env: Record<string, string | undefined>;
  let marker: string;
  const origins = new Map<string, string>();
  const run = (...args: string[]) => airlock(env, cluster.dir, ...args);

  before(async () => {
    cluster = await startCluster({ executors: 1, executorArgs: ["--queues", "batch", "--max-jobs", "2"] });
    env = { ...baseEnv, AIRLOCK_URL: cluster.coordinator.url, AIRLOCK_DATA: cluster.coordinator.dataDir };
    marker = join(cluster.dir, "allow-flaky");
    for (const name of ["acme/one", "acme/two", "acme/flaky"]) {
      const origin = await makeRepo(join(cluster.dir, "origins", name), { "hello.txt": `hello from ${name}\n`, "other.txt": "unrelated\n" });
      origins.set(name, origin);
      await cluster.api.addRepository(name, origin);
    }
    await writeFile(
      join(cluster.dir, "spec.yaml"),
      `name: greet
on: ["acme/*"]
isolation: none
steps:
  - run: |
      if [ "\${{ repository.name }}" = acme/flaky ] && [ ! -e ${marker} ]; then echo "not yet" >&2; exit 3; fi
      sed -i 's/hello/howdy/' hello.txt
changesetTemplate:
  branch: greet/\${{ repository.name }}
  commit:
    message: Say howdy
`,
    );
    await writeFile(join(cluster.dir, "stuck.yaml"), `name: stuck\non: [acme/one, acme/two]\nqueue: nobody-serves-this\nisolation: none\nsteps:\n  - run: "true"\n`);
  });
  after(async () => {
    await cluster?.close();
  });

  it("previews with a line per change and a final table; exits 1 when an entry failed", async () => {
    const result = await run("batch", "preview", "spec.yaml");
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stderr, /batch greet version 1: 3 jobs queued, 0 cached/);
    assert.match(result.stdout, /^acme\/flaky: failed \(step step-1 exited with code 3\)$/m);
    assert.match(result.stdout, /^acme\/one: completed 1 files \+1 -1$/m);
    assert.match(result.stdout, /^REPOSITORY\s+WORKSPACE\s+STATE\s+CACHED\s+FILES\s+\+\s+-$/m);
    assert.match(result.stdout, /^acme\/two\s+-\s+completed\s+-\s+1\s+\+1\s+-1$/m);
  });

  it("lists, shows (table and JSON), prints diffs and logs", async () => {
    const list = await run("batch", "list");
    assert.match(list.stdout, /^greet\s+1\s+3\s+2 completed, 1 failed\s+\d/m);
    const show = await run("batch", "show", "greet");
    assert.match(show.stdout, /^batch greet: version 1 of 1 \(server/m);
    assert.match(show.stdout, /^acme\/flaky\s+-\s+failed\s+-\s+-\s+-\s+-\s+-$/m);
    const json = JSON.parse((await run("batch", "show", "greet", "--json")).stdout) as BatchView;
    assert.deepEqual(json.entries.map((entry) => [entry.repository, entry.state]), [["acme/flaky", "failed"], ["acme/one", "completed"], ["acme/two", "completed"]]);
    const diff = await run("batch", "diff", "greet", "--repo", "acme/one");
    assert.match(diff.stdout, /^-hello from acme\/one\n\+howdy from acme\/one$/m);
    const combined = await run("batch", "diff", "greet");
    assert.match(combined.stdout, /^# acme\/one at [0-9a-f]{40}\ndiff --git a\/hello.txt b\/hello.txt/m);
    assert.match(combined.stdout, /^# acme\/two at /m);
    const logs = await run("batch", "logs", "greet", "--repo", "acme/flaky");
    assert.match(logs.stdout, /not yet/);
    const missing = await run("batch", "logs", "greet", "--repo", "acme/none");
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /batch "greet" has no repository acme\/none/);
  });

  it("retries only the failed entries", async () => {
    await writeFile(marker, "");
    const jobsBefore = (await cluster.api.listJobs()).length;
    const result = await run("batch", "retry", "greet", "--failed");
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stderr, /1 jobs queued again/);
    assert.match(result.stdout, /^acme\/flaky: completed 1 files \+1 -1$/m);
    assert.equal((await cluster.api.listJobs()).length, jobsBefore + 1);
  });

  it("applies the repositories asked for, then the rest; a second apply changes nothing", async () => {
    const some = await run("batch", "apply", "greet", "--repo", "acme/one");
    assert.equal(some.status, 0, some.stderr);
    assert.match(some.stdout, /^acme\/one\s+-\s+greet\/acme\/one\s+pushed\s+[0-9a-f]{12}/m);
    assert.equal((await git(origins.get("acme/one")!, "log", "-1", "--format=%s|%an", "greet/acme/one")).trim(), "Say howdy|Airlock");
    assert.equal((await git(origins.get("acme/two")!, "branch", "--list", "greet/*")).trim(), "");
    const rest = await run("batch", "apply", "greet");
    assert.match(rest.stdout, /^acme\/one\s+-\s+greet\/acme\/one\s+unchanged/m);
    assert.match(rest.stdout, /^acme\/two\s+-\s+greet\/acme\/two\s+pushed/m);
    assert.match(rest.stdout, /^acme\/flaky\s+-\s+greet\/acme\/flaky\s+pushed/m);
    const again = await run("batch", "apply", "greet");
    assert.equal(again.status, 0);
    assert.match(again.stderr, /3 unchanged/);
    const show = await run("batch", "show", "greet");
    assert.match(show.stdout, /^acme\/two\s+-\s+completed\s+-\s+1\s+\+1\s+-1\s+unchanged [0-9a-f]{12}$/m);
  });

  it("detaches, and cancels a batch's unfinished jobs", async () => {
    const detached = await run("batch", "preview", "stuck.yaml", "--detach");
    assert.equal(detached.status, 0, detached.stderr);
    assert.match(detached.stdout, /^acme\/one\s+-\s+queued/m);
    const canceled = await run("batch", "cancel", "stuck");
    assert.equal(canceled.status, 0, canceled.stderr);
    assert.match(canceled.stdout, /2 canceled/);
    const view = await cluster.api.getBatch("stuck");
    assert.ok(view.entries.every((entry) => entry.state === "canceled"));
  });
});
