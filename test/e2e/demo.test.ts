/** `airlock demo --once`: the demo users run first must pass on every machine. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { BIN, baseEnv, tempDir } from "../helpers/cluster.ts";

describe("demo", () => {
  it("runs every sample job to its expected diff and exits 0", async () => {
    const dir = await tempDir();
    try {
      const result = spawnSync(BIN, ["demo", "--once", "--data", join(dir, "demo"), "--listen", "127.0.0.1:0"], { env: baseEnv, encoding: "utf8", timeout: 240_000 });
      assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
      assert.match(result.stdout, /ok\s+rewrite a word/);
      assert.match(result.stdout, /\+Hello, Airlock/);
      assert.match(result.stdout, /GIT binary patch/);
      assert.doesNotMatch(result.stdout, /s3cr3t-demo-value/);
      assert.doesNotMatch(result.stdout, /FAIL/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
