/**
 * Rotating the API and executor tokens without a restart: token files hold several tokens, each
 * accepted; SIGHUP reads them again. A running executor keeps working through the window, and a
 * bad file at reload changes nothing.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { startAirlock, startLocalCoordinator, type LocalCoordinator, type ManagedProcess } from "../../src/cli/local-cluster.ts";
import { baseEnv, ENTRY, http, tempDir } from "../helpers/cluster.ts";
import { until } from "../helpers/until.ts";

const OLD_API = "aat_old-api-token-0123456789";
const NEW_API = "aat_new-api-token-9876543210";
const OLD_EXEC = "aet_old-executor-token-0123456789";
const NEW_EXEC = "aet_new-executor-token-9876543210";

describe("token rotation", () => {
  let dir: string;
  let coordinator: LocalCoordinator;
  let executor: ManagedProcess;
  let apiFile: string;
  let executorFile: string;

  const apiStatus = async (token: string) => (await http(`${coordinator.url}/api/executors`, { headers: { authorization: `Bearer ${token}` } })).status;
  const executorStatus = async (token: string) => (await http(`${coordinator.url}/.executors/auth-check`, { headers: { authorization: `token-executor ${token}` } })).status;
  /** SIGHUP, then waits for the coordinator to log the reload (or the refusal) `count` times. */
  async function reload(count: number): Promise<void> {
    coordinator.child.kill("SIGHUP");
    await until(async () => ((await readFile(coordinator.logFile, "utf8")).match(/tokens (not )?reloaded/g) ?? []).length >= count, "the coordinator logged the reload");
  }

  before(async () => {
    dir = await tempDir("airlock-rotation-");
    apiFile = join(dir, "api-tokens");
    executorFile = join(dir, "executor-tokens");
    await writeFile(apiFile, `# the API token\n${OLD_API}\n`, { mode: 0o600 });
    await writeFile(executorFile, `${OLD_EXEC}\n`, { mode: 0o600 });
    coordinator = await startLocalCoordinator({
      entry: ENTRY,
      dataDir: join(dir, "coordinator"),
      env: baseEnv,
      extraArgs: ["--api-token-file", apiFile, "--executor-token-file", executorFile, "--lease-timeout", "3s"],
    });
    executor = startAirlock(ENTRY, ["executor", "run", "--url", coordinator.url, "--token-file", executorFile, "--runtime", "shell", "--data", join(dir, "executor"), "--name", "rotating", "--heartbeat-interval", "300ms"], {
      env: baseEnv,
      logFile: join(dir, "executor.log"),
    });
  });
  after(async () => {
    await executor?.stop(5000);
    await coordinator?.stop(5000);
  });

  it("accepts the old and new tokens during the window, then only the new", async () => {
    assert.equal(await apiStatus(OLD_API), 200);
    assert.equal(await apiStatus(NEW_API), 401);
    assert.equal(await executorStatus(NEW_EXEC), 401);

    await writeFile(apiFile, `${NEW_API}\n${OLD_API}\n`);
    await writeFile(executorFile, `${NEW_EXEC}\n${OLD_EXEC}\n`);
    await reload(1);
    assert.equal(await apiStatus(OLD_API), 200, "old API token still valid in the window");
    assert.equal(await apiStatus(NEW_API), 200, "new API token valid");
    assert.equal(await executorStatus(OLD_EXEC), 200);
    assert.equal(await executorStatus(NEW_EXEC), 200);

    // The running executor still holds the old token; its heartbeats keep being accepted.
    const heartbeat = async () => Date.parse((await (await fetch(`${coordinator.url}/api/executors`, { headers: { authorization: `Bearer ${NEW_API}` } })).json() as { executors: { name: string; lastHeartbeatAt: string }[] }).executors.find((view) => view.name === "rotating")?.lastHeartbeatAt ?? "0");
    const seen = await heartbeat();
    await until(async () => (await heartbeat()) > seen, "the executor with the old token heartbeats in the window");

    await writeFile(apiFile, `${NEW_API}\n`);
    await writeFile(executorFile, `${NEW_EXEC}\n`);
    await reload(2);
    assert.equal(await apiStatus(OLD_API), 401, "old API token retired");
    assert.equal(await apiStatus(NEW_API), 200);
    assert.equal(await executorStatus(OLD_EXEC), 401, "old executor token retired");
    assert.equal(await executorStatus(NEW_EXEC), 200);
  });

  it("keeps the tokens in use when a file is bad at reload", async () => {
    await writeFile(apiFile, "# emptied by mistake\n");
    await reload(3);
    assert.match(await readFile(coordinator.logFile, "utf8"), /--api-token-file: .*api-tokens.* holds no token.*tokens not reloaded: keeping the ones in use/);
    assert.equal(await apiStatus(NEW_API), 200, "the last good tokens stay");
  });

  it("refuses to start with a missing token file, naming it", async () => {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [ENTRY, "server", "--data", join(dir, "other"), "--listen", "127.0.0.1:0", "--api-token-file", join(dir, "nope")], { env: baseEnv }, (error, _stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--api-token-file: cannot read ".*nope": ENOENT/);
  });
});
