/**
 * Where a no-op job's time goes: a coordinator (SQLite) and a shell executor (--max-jobs 8) run
 * under `--cpu-prof` while BENCH_PROFILE_JOBS no-op jobs pass through, then each profile is
 * summarized by self time (per function, and per area of the code). Not a benchmark (the
 * profiler slows what it watches); `node bench/profile-noop.ts [keep-dir]` keeps the
 * .cpuprofile files for a flame graph (e.g. load them into Chrome's DevTools).
 *
 * Sampling every 4 ms rather than the default 1 ms: at 1 ms the profiler's signal keeps
 * interrupting the executor's synchronous fork+exec, which then restarts, and the run slows 3x.
 */
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { ApiClient } from "../src/cli/api-client.ts";
import { startAirlock, startLocalCoordinator } from "../src/cli/local-cluster.ts";
import { baseEnv, ENTRY, tempDir } from "../test/helpers/cluster.ts";
import { printTable } from "./lib.ts";

const JOBS = Number(process.env.BENCH_PROFILE_JOBS ?? 400);
const keep = process.argv[2];
const dir = await tempDir("airlock-profile-");
const profiles = keep ?? join(dir, "profiles");
await mkdir(join(profiles, "coordinator"), { recursive: true });
await mkdir(join(profiles, "executor"), { recursive: true });
const profiled = (where: string) => ({ ...baseEnv, NODE_OPTIONS: `--cpu-prof --cpu-prof-interval 4000 --cpu-prof-dir ${join(profiles, where)}` });

const coordinator = await startLocalCoordinator({ entry: ENTRY, dataDir: join(dir, "coordinator"), env: profiled("coordinator"), extraArgs: ["--log-level", "warn"] });
const executor = startAirlock(ENTRY, ["executor", "run", "--url", coordinator.url, "--runtime", "shell", "--data", join(dir, "executor"), "--name", "profile", "--max-jobs", "8", "--log-level", "warn"], {
  env: { ...profiled("executor"), AIRLOCK_EXECUTOR_TOKEN: coordinator.executorToken },
  logFile: join(dir, "executor.log"),
});
const api = new ApiClient({ url: coordinator.url, token: coordinator.apiToken });
let seconds = 0;
try {
  while (!(await api.executors()).some((candidate) => candidate.name === "profile")) await new Promise((resolve) => setTimeout(resolve, 50));
  const started = performance.now();
  await Promise.all(Array.from({ length: JOBS }, () => api.submit({ isolation: "none", steps: [{ commands: ["true"] }] })));
  // Polled slowly: listing up to JOBS jobs costs the coordinator too, and shows in its profile.
  while ((await api.listJobs({ state: "completed", limit: JOBS })).length < JOBS) await new Promise((resolve) => setTimeout(resolve, 250));
  seconds = (performance.now() - started) / 1000;
} finally {
  await api.close();
  await executor.stop(10_000);
  await coordinator.stop(10_000);
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Which part of the code a frame belongs to, for the per-area table. */
function area(url: string, name: string): string {
  if (name === "(garbage collector)" || name === "(idle)" || name === "(program)") return name;
  if (url.includes("/node_modules/")) return `npm ${/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? "?"}`;
  if (url.includes("/src/")) return url.slice(url.lastIndexOf("/src/") + 1);
  if (url.startsWith("node:")) return url.replace(/^node:internal\//, "node:").split("/").slice(0, 2).join("/");
  return url === "" ? `native ${name}` : url;
}

async function summarize(where: string): Promise<void> {
  const file = (await readdir(join(profiles, where))).find((name) => name.endsWith(".cpuprofile"));
  if (!file) throw new Error(`no profile written for the ${where}`);
  const profile = JSON.parse(await readFile(join(profiles, where, file), "utf8")) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMs = new Map<number, number>();
  profile.samples.forEach((id, index) => selfMs.set(id, (selfMs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0) / 1000));
  const functions = new Map<string, number>();
  const areas = new Map<string, number>();
  let busy = 0;
  for (const [id, ms] of selfMs) {
    const frame = (byId.get(id) as ProfileNode).callFrame;
    if (frame.functionName !== "(idle)") busy += ms;
    const name = `${frame.functionName || "(anonymous)"} ${frame.url ? `${frame.url.replace(/^.*\/(src|node_modules)\//, "$1/")}:${frame.lineNumber + 1}` : ""}`.trim();
    functions.set(name, (functions.get(name) ?? 0) + ms);
    const key = area(frame.url, frame.functionName);
    areas.set(key, (areas.get(key) ?? 0) + ms);
  }
  console.log(`\n### ${where}: ${busy.toFixed(0)} ms busy of ${(seconds * 1000).toFixed(0)} ms, ${(busy / JOBS).toFixed(2)} ms per job\n`);
  const top = (map: Map<string, number>, count: number) =>
    [...map.entries()]
      .filter(([name]) => !name.startsWith("(idle)"))
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([name, ms]) => [name, ms, ms / JOBS]);
  printTable(["area (self time)", "ms", "ms per job"], top(areas, 14));
  console.log("");
  printTable(["function (self time)", "ms", "ms per job"], top(functions, 22));
}

try {
  console.log(`${JOBS} no-op jobs in ${seconds.toFixed(2)} s (${(JOBS / seconds).toFixed(1)} jobs/s under the profiler)`);
  await summarize("coordinator");
  await summarize("executor");
} finally {
  await rm(dir, { recursive: true, force: true });
}
