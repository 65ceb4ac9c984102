/**
 * `airlock server backup --to FILE` while the coordinator runs and takes writes: the copy is one
 * consistent state, and a coordinator started on it (with the data dir's tokens and mirrors)
 * serves the jobs, logs and diffs it holds.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, cp, mkdir } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { ApiClient } from "../../src/cli/api-client.ts";
import { startLocalCoordinator, type LocalCoordinator } from "../../src/cli/local-cluster.ts";
import { baseEnv, ENTRY, logText, makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

const exec = promisify(execFile);

async function airlock(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [ENTRY, ...args], { env: baseEnv, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === "number" ? failed.code : -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

describe("server backup", () => {
  let cluster: Cluster;
  let restored: LocalCoordinator | undefined;

  before(async () => {
    cluster = await startCluster({ executors: 1 });
    await cluster.api.addRepository("acme/backup", await makeRepo(join(cluster.dir, "repo"), { "a.txt": "one\n" }));
  });
  after(async () => {
    await restored?.stop(5000);
    await cluster.close();
  });

  it("copies the store while jobs are written, and a coordinator restored from it serves them", async () => {
    const done = [];
    for (let index = 0; index < 3; index += 1) {
      const job = await cluster.api.submit({ repository: "acme/backup", isolation: "none", outputs: { diff: true }, steps: [{ key: "edit", commands: [`echo run ${index}`, `echo line-${index} >> a.txt`] }] });
      done.push(await waitForJob(cluster.api, job.id));
    }
    assert.deepEqual(done.map((job) => job.state), ["completed", "completed", "completed"]);
    // Jobs keep arriving during the backup: the copy holds a consistent state either way.
    let submitting = true;
    const busy = (async () => {
      let count = 0;
      while (submitting) {
        await cluster.api.submit({ isolation: "none", steps: [{ key: "noise", commands: ["true"] }] });
        count += 1;
      }
      return count;
    })();
    const file = join(cluster.dir, "backup.db");
    const result = await airlock(["server", "backup", "--data", cluster.coordinator.dataDir, "--to", file]);
    submitting = false;
    const submittedDuring = await busy;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /backed up .*airlock\.db to .*backup\.db: .*schema version \d+, \d+ jobs/);
    assert.ok(submittedDuring > 0, "jobs were submitted while the backup ran");

    const again = await airlock(["server", "backup", "--data", cluster.coordinator.dataDir, "--to", file]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /--to: .*backup\.db exists; a backup never overwrites a file/);

    // Restore: the backup as the store of a fresh data dir, with the tokens and mirrors copied.
    const dataDir = join(cluster.dir, "restored");
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await copyFile(file, join(dataDir, "airlock.db"));
    for (const name of ["api-token", "executor-token"]) await copyFile(join(cluster.coordinator.dataDir, name), join(dataDir, name));
    await cp(join(cluster.coordinator.dataDir, "repos"), join(dataDir, "repos"), { recursive: true });
    restored = await startLocalCoordinator({ entry: ENTRY, dataDir, env: baseEnv });
    const api = new ApiClient({ url: restored.url, token: restored.apiToken });
    try {
      for (const [index, job] of done.entries()) {
        const view = await api.getJob(job.id);
        assert.equal(view.state, "completed");
        assert.equal(await logText(api, view, "edit"), `run ${index}\n`);
        assert.match((await api.artifactBytes(job.id, "diff")).toString(), new RegExp(`\\+line-${index}`));
      }
      assert.equal((await api.repositories()).map((repo) => repo.name).join(), "acme/backup");
    } finally {
      await api.close();
    }
  });

  it("points a Postgres store at pg_dump, and names a missing SQLite store", async () => {
    const postgres = await airlock(["server", "backup", "--database", "postgres://airlock@127.0.0.1:1/airlock", "--to", join(cluster.dir, "pg.dump")]);
    assert.equal(postgres.code, 2);
    assert.match(postgres.stderr, /store is Postgres: back it up with pg_dump/);
    const missing = await airlock(["server", "backup", "--data", join(cluster.dir, "nowhere"), "--to", join(cluster.dir, "x.db")]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no SQLite store at .*nowhere\/airlock\.db/);
    assert.equal(existsSync(join(cluster.dir, "x.db")), false);
  });
});
