/**
 * 100 live followers of one job over the coordinator's events stream (SSE): 95 in this process
 * through followJob (what `airlock jobs logs -f` runs), each on its own connection, and 5 real
 * `airlock jobs logs -f` processes. All attach while the job is still queued; the step then
 * prints a predictable pseudo-random stream over a few seconds. Each follower must get every byte
 * once, in order (event offsets contiguous), and the job's end.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { ApiClient } from "../../src/cli/api-client.ts";
import { followJob } from "../../src/cli/follow.ts";
import { nodeFlagsFor } from "../../src/cli/local-cluster.ts";
import type { LogEvent } from "../../src/protocol/index.ts";
import { baseEnv, ENTRY, logText, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { expectedStream, printFigures, sha256, streamCommand } from "./helpers.ts";

const IN_PROCESS = 95;
const PROCESSES = 5;

interface Follower {
  /** Text per entry key, in arrival order. */
  texts: Map<string, string>;
  /** Events whose offset did not continue where the previous one of their key ended. */
  gaps: string[];
  events: number;
}

describe("fault: 100 live followers of one job", () => {
  let cluster: Cluster;
  const clients: ApiClient[] = [];
  before(async () => {
    cluster = await startCluster({ executors: 0 });
  });
  after(async () => {
    for (const client of clients) await client.close();
    await cluster?.close();
  });

  it("each follower gets every byte of the log, in order, and the job's end", async (t) => {
    const stream = { seed: 7, lines: 1500, width: 70, burst: 50, pauseSeconds: 0.12 };
    const expected = expectedStream(stream);
    const submitted = await cluster.api.submit({ queue: "followed", isolation: "none", steps: [{ key: "stream", commands: [streamCommand(stream)] }] });

    const followers: Follower[] = [];
    const finished: Promise<string>[] = [];
    const followEnds: number[] = [];
    for (let index = 0; index < IN_PROCESS; index += 1) {
      const follower: Follower = { texts: new Map(), gaps: [], events: 0 };
      followers.push(follower);
      const client = new ApiClient({ url: cluster.coordinator.url, token: cluster.coordinator.apiToken });
      clients.push(client);
      const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
      finished.push(
        followJob(client, submitted.id, {
          out: sink,
          onLog: (event: LogEvent) => {
            const sofar = follower.texts.get(event.key) ?? "";
            if (event.offset !== Buffer.byteLength(sofar)) follower.gaps.push(`${event.key}@${event.offset} after ${Buffer.byteLength(sofar)}`);
            follower.texts.set(event.key, sofar + event.text);
            follower.events += 1;
          },
        }).then((state) => {
          followEnds.push(Date.now());
          return state;
        }),
      );
    }
    const cli = Array.from({ length: PROCESSES }, () => {
      const args = ["jobs", "logs", String(submitted.id), "-f", "--url", cluster.coordinator.url];
      const child = spawn(process.execPath, [...nodeFlagsFor(args), ENTRY, ...args], { env: { ...baseEnv, AIRLOCK_TOKEN: cluster.coordinator.apiToken }, stdio: ["ignore", "pipe", "pipe"] });
      const out: Buffer[] = [];
      child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
      return new Promise<{ code: number | null; stdout: string }>((resolve) => child.on("exit", (code) => resolve({ code, stdout: Buffer.concat(out).toString("utf8") })));
    });
    // Let every follower attach while the job is queued, then let it run.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const startedAt = Date.now();
    cluster.startExecutor(["--queues", "followed"]);
    const job = await waitForJob(cluster.api, submitted.id, undefined, 120_000);
    const endedAt = Date.now();
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    assert.equal(await logText(cluster.api, job, "stream"), expected, "the stored log is the stream");

    const states = await Promise.all(finished);
    // After the job's end was stored, how long until the slowest follower had seen it.
    const slowestEndMs = Math.max(...followEnds) - Date.parse(job.finishedAt ?? "");
    const whole = followers.filter((follower) => follower.texts.get("stream") === expected).length;
    const gaps = followers.flatMap((follower) => follower.gaps);
    const cliResults = await Promise.all(cli);
    const stored = (await Promise.all(job.entries.filter((entry) => entry.size > 0).map((entry) => logText(cluster.api, job, entry.key)))).join("");
    const cliWhole = cliResults.filter((result) => result.code === 0 && result.stdout === stored).length;
    printFigures(t, "100 live followers", {
      followers: IN_PROCESS + PROCESSES,
      log_bytes: expected.length,
      job_ran_ms: endedAt - startedAt,
      got_every_byte_in_order: `${whole + cliWhole}/${IN_PROCESS + PROCESSES}`,
      offset_gaps_or_repeats: gaps.length,
      events_per_follower: Math.round(followers.reduce((sum, follower) => sum + follower.events, 0) / followers.length),
      slowest_follower_end_after_job_end_ms: slowestEndMs,
      sha256: sha256(expected).slice(0, 12),
    });
    assert.deepEqual(states, Array.from({ length: IN_PROCESS }, () => "completed"), "every follower saw the end");
    assert.deepEqual(gaps, [], "no follower got a byte twice or missed one");
    assert.equal(whole, IN_PROCESS, "every in-process follower got the whole stream");
    assert.deepEqual(
      cliResults.map((result) => [result.code, sha256(result.stdout)]),
      cliResults.map(() => [0, sha256(stored)]),
      "every `airlock jobs logs -f` printed every entry's log and exited 0",
    );
  });
});
