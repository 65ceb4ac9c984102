/** The shell runtime against the promise suite (only the parts that apply to isolation none). */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import type { StepSpec } from "../../src/protocol/index.ts";
import { sandboxLabels } from "../../src/runtimes/index.ts";
import { ShellRuntime } from "../../src/runtimes/shell/index.ts";
import { findMarked } from "../../src/runtimes/shell/process-tree.ts";
import { runtimePromiseSuite } from "./promise-suite.ts";

runtimePromiseSuite({
  name: "shell",
  isolated: false,
  images: { primary: "ignored", secondary: "ignored" },
  async setup() {
    return { runtime: new ShellRuntime({ path: process.env.PATH ?? "/usr/bin:/bin" }) };
  },
  async leftovers(jobId) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    return findMarked((marker) => marker.startsWith(`shell-${jobId}-`)).map(String);
  },
});

it("shell: destroy kills a daemon a finished step left behind, outside its process group", async () => {
  const root = await mkdtemp(join(tmpdir(), "airlock-shell-daemon-"));
  const runtime = new ShellRuntime({ path: process.env.PATH ?? "/usr/bin:/bin" });
  const jobId = 900_000 + (process.pid % 1000);
  const sandbox = await runtime.createSandbox({ jobId, attempt: 1, executorName: "test", workspace: root, scratchDir: join(root, ".scratch"), resources: {}, labels: sandboxLabels("test", jobId, 1), logger: silentLogger });
  const step: StepSpec = { key: "daemon", image: "ignored", commands: [], dir: ".", env: {} };
  try {
    const outcome = await sandbox.exec(
      {
        step,
        env: {},
        // Waits until the daemon is in its own session: until then the step's end kills it with the group.
        script: "(setsid sh -c 'echo $$ > daemon.pid; exec sleep 303' </dev/null >/dev/null 2>&1 &); while [ ! -s daemon.pid ]; do sleep 0.01; done",
      },
      { write: () => undefined },
      new AbortController().signal,
    );
    assert.equal(outcome.exitCode, 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const left = findMarked((marker) => marker === sandbox.id);
    assert.equal(left.length, 1, "the daemon outlived its step, in a session of its own");
    await sandbox.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(findMarked((marker) => marker === sandbox.id), []);
  } finally {
    await sandbox.destroy();
    await rm(root, { recursive: true, force: true });
  }
});
