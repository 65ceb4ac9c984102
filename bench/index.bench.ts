/**
 * Indexing the same real package (immer's TypeScript sources, fetched with `npm pack`, with the
 * devDependencies a TypeScript project of it has: typescript and @types/node, locked): the
 * install and scip-typescript run directly on the host (npm with a warm cache, the image's copy
 * of scip-typescript, the host's Node) vs through Airlock (`POST /api/indexes` -> a job in bwrap
 * or docker -> the index registered), cold (an executor without a package cache: every run
 * downloads the dependencies through the egress gateway) and warm (the executor's verified npm
 * cache lent to the install step). Each run is a fresh commit, so no index is reused; the first
 * round (which unpacks the images, and fills the warm caches) is not counted, and each round runs
 * every setup in turn so that the machine's changing load falls on all alike.
 * Target (docs/indexing.md): Airlock <= 1.2x the host run with a warm cache.
 *   scripts/bench.sh index        (BENCH_INDEX_RUNS, default 3)
 */
import { spawnSync } from "node:child_process";
import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_IMAGES } from "../test/helpers/bwrap.ts";
import { baseEnv, commitFile, makeRepo, startCluster, tempDir, type Cluster } from "../test/helpers/cluster.ts";
import { PACKAGE, publishedSources } from "../test/helpers/npm-package.ts";
import { SOCKET } from "../test/runtimes/docker-target.ts";
import { median, printTable } from "./lib.ts";

const RUNS = Number(process.env.BENCH_INDEX_RUNS ?? 3);
const SCIP = join(TEST_IMAGES, "node-indexer", "rootfs", "usr", "lib", "node_modules", "@sourcegraph", "scip-typescript", "dist", "src", "main.js");
const DEV_DEPENDENCIES = { typescript: "5.6.3", "@types/node": "22.10.1" };

if (!existsSync(SCIP)) {
  console.log(`skipped: the airlock-test/node-indexer image is missing in ${TEST_IMAGES} (scripts/test-images.sh builds it)`);
  process.exit(0);
}

const work = await tempDir("airlock-index-bench-");
const files = await publishedSources(join(work, "pack"));
const manifest = JSON.parse(files["package.json"]!) as Record<string, unknown>;
files["package.json"] = JSON.stringify({ ...manifest, devDependencies: DEV_DEPENDENCIES }, null, 2);
const ca = "/etc/ssl/certs/ca-certificates.crt";
const hostCache = join(work, "host-npm-cache");
const npmEnv = { ...baseEnv, npm_config_cache: hostCache, ...(existsSync(ca) ? { NODE_EXTRA_CA_CERTS: ca } : {}) };
const npm = (cwd: string, ...args: string[]): void => {
  const result = spawnSync("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error", "--omit-lockfile-registry-resolved=false"], { cwd, env: npmEnv, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`npm ${args.join(" ")} exited with ${result.status}: ${result.stderr}`);
};
const repo = await makeRepo(join(work, "immer"), files);
npm(repo, "install", "--package-lock-only");
await commitFile(repo, "package-lock.json", await readFile(join(repo, "package-lock.json"), "utf8"));
const tarballs = (JSON.parse(await readFile(join(repo, "package-lock.json"), "utf8")) as { packages: Record<string, unknown> }).packages;

/** Per run: the whole, the install and the index (ms). */
interface Run {
  total: number;
  install: number;
  index: number;
}

async function hostRun(): Promise<Run> {
  const dir = await mkdtemp(join(tmpdir(), "airlock-index-host-"));
  await cp(repo, dir, { recursive: true });
  const started = performance.now();
  npm(dir, "ci");
  const installed = performance.now();
  const result = spawnSync(process.execPath, [SCIP, "index", "--output", "index.scip"], { cwd: dir, env: baseEnv, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`scip-typescript on the host exited with ${result.status}: ${result.stderr}`);
  const done = performance.now();
  await rm(dir, { recursive: true, force: true });
  return { total: done - started, install: installed - started, index: done - installed };
}

interface Setup {
  label: string;
  warm: boolean;
  cluster: Cluster;
  runs: Run[];
  failure?: string | undefined;
}

async function setup(runtime: "bwrap" | "docker", warm: boolean): Promise<Setup> {
  const args = runtime === "bwrap" ? ["--images", TEST_IMAGES] : ["--docker-host", SOCKET];
  const cluster = await startCluster({ runtime, executorArgs: [...args, "--egress-allow", "registry.npmjs.org:443", ...(warm ? [] : ["--package-cache-max", "off"])] });
  await cluster.api.addRepository("oss/immer", repo);
  return { label: `airlock ${runtime}, ${warm ? "warm package cache" : "cold (no package cache)"}`, warm, cluster, runs: [] };
}

async function airlockRun(target: Setup, round: number): Promise<Run> {
  await commitFile(repo, "BENCH.md", `${target.label} ${round}\n`);
  const started = performance.now();
  const plan = await target.cluster.api.index({ repository: "oss/immer" });
  const id = plan.entries[0]!.index!.id;
  let index = await target.cluster.api.getIndex(id);
  while (index.state === "pending") {
    await new Promise((resolve) => setTimeout(resolve, 100));
    index = await target.cluster.api.getIndex(id);
  }
  if (index.state !== "completed") throw new Error(`index ${id} failed: ${index.failureMessage}`);
  const total = performance.now() - started;
  const job = await target.cluster.api.getJob(index.jobId);
  const step = (key: string): number => job.steps.find((entry) => entry.key === key)?.durationMs ?? Number.NaN;
  return { total, install: step("install"), index: step("index") };
}

const load = (await readFile("/proc/loadavg", "utf8")).trim();
const medians = (runs: Run[]): string[] => [median(runs.map((run) => run.total)).toFixed(0), median(runs.map((run) => run.install)).toFixed(0), median(runs.map((run) => run.index)).toFixed(0)];
const setups = [await setup("bwrap", false), await setup("bwrap", true), await setup("docker", false), await setup("docker", true)];
const hostRuns: Run[] = [];
try {
  // Round 0 fills the host's npm cache and the warm executors' caches and unpacks the images: not counted.
  // Rounds run every setup in turn, so the machine's changing load falls on all of them alike.
  for (let round = 0; round <= RUNS; round++) {
    const direct = await hostRun();
    if (round > 0) hostRuns.push(direct);
    for (const target of setups) {
      if (target.failure) continue;
      try {
        const run = await airlockRun(target, round);
        if (round > 0) target.runs.push(run);
      } catch (error) {
        target.failure = `failed: ${(error as Error).message}`;
      }
    }
  }
} finally {
  for (const target of setups) await target.cluster.close();
}
const direct = median(hostRuns.map((run) => run.total));
const rows: (string | number)[][] = [["host (npm ci with a warm cache, scip-typescript)", ...medians(hostRuns), "1.00", "-"]];
for (const target of setups) {
  if (target.failure) rows.push([target.label, target.failure, "-", "-", "-", target.warm ? "<= 1.2" : "-"]);
  else rows.push([target.label, ...medians(target.runs), (median(target.runs.map((run) => run.total)) / direct).toFixed(2), target.warm ? "<= 1.2" : "-"]);
}
console.log(`${PACKAGE}, ${Object.keys(files).filter((path) => path.endsWith(".ts")).length} source files, ${Object.keys(tarballs).length - 1} locked packages (${Object.keys(DEV_DEPENDENCIES).join(", ")}), median of ${RUNS} runs (ms); load before: ${load}; after: ${(await readFile("/proc/loadavg", "utf8")).trim()}`);
printTable(["run", "total ms (request -> index registered)", "install step ms", "index step ms", "vs host", "target"], rows);
await rm(work, { recursive: true, force: true });
