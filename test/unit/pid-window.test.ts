import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { lowestPidSince, openPidWindow } from "../../src/runtimes/shell/pid-window.ts";
import { findMarked } from "../../src/runtimes/shell/process-tree.ts";

describe("pid window", () => {
  const window = { lastPid: 20_000, forks: 1_000_000, threads: 300 };

  it("narrows to pids above the cursor while no wrap is possible", () => {
    assert.equal(lowestPidSince(window, { lastPid: 20_050, forks: 1_000_050, threads: 320, pidMax: 32_768 }), 20_001);
  });

  it("scans everything once the cursor may have wrapped", () => {
    // Went below where it stood: wrapped.
    assert.equal(lowestPidSince(window, { lastPid: 400, forks: 1_013_000, threads: 300, pidMax: 32_768 }), 0);
    // Above it again, but enough forks (plus the pids in use to skip) to have gone all the way round.
    assert.equal(lowestPidSince(window, { lastPid: 20_100, forks: 1_012_468, threads: 300, pidMax: 32_768 }), 0);
    assert.equal(lowestPidSince(window, { lastPid: 20_100, forks: 1_012_467, threads: 300, pidMax: 32_768 }), 20_001);
  });

  it("scans everything when /proc told nothing", () => {
    assert.equal(lowestPidSince(undefined, { ...window, pidMax: 32_768 }), 0);
    assert.equal(lowestPidSince(window, undefined), 0);
  });

  it("finds a marked process forked after the window opened, reading only newer pids", (t) => {
    const opened = openPidWindow();
    if (!opened) return t.skip("/proc/loadavg, /proc/stat or pid_max unreadable here");
    const marker = `pid-window-test-${process.pid}`;
    const child = spawnSync("/bin/sh", ["-c", "sleep 30 >/dev/null 2>&1 & echo $!"], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", AIRLOCK_SANDBOX: marker }, encoding: "utf8" });
    const pid = Number(child.stdout.trim());
    try {
      assert.ok(pid > 0, `no pid from the shell: ${child.stderr}`);
      assert.deepEqual(findMarked((candidate) => candidate === marker, opened), [pid]);
      // A window opened after it was forked cannot see it (unless pids wrapped meanwhile).
      const later = openPidWindow();
      if (later && later.lastPid >= pid) assert.deepEqual(findMarked((candidate) => candidate === marker, later), []);
    } finally {
      if (pid > 0) process.kill(pid, "SIGKILL");
    }
  });
});
