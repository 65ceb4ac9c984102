/**
 * Indexing the same real package (immer's TypeScript sources, fetched with `npm pack`, with the
 * devDependencies a TypeScript project of it has: typescript and @types/node, locked): the
 * install and scip-typescript run directly on the host (npm with a warm cache, the image's copy
 * of scip-typescript, the host's Node) vs through Airlock (`POST /api/indexes` -> a job in bwrap
 * or docker -> the index registered), cold (an executor without a package cache: every run
 * downloads the dependencies through the egress gateway) and warm (the executor's verified npm
 * cache lent to the install step). Each run is a fresh commit, so no index is reused; the first
 * run of each executor (which unpacks the image, and fills the warm cache) is not counted.
 * Target (docs/indexing.md): Airlock <= 1.2x the host run with a warm cache.
 *   scripts/bench.sh index        (BENCH_INDEX_RUNS, default 3)
 */
import { spawnSync } from "node:child_process";
import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_IMAGES } from "../test/helpers/bwrap.ts";
import { baseEnv, commitFile, makeRepo, startCluster, tempDir } from "../test/helpers/cluster.ts";
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

async function host(): Promise<number[]> {
  const times: number[] = [];
  for (let run = 0; run <= RUNS; run++) {
    const dir = await mkdtemp(join(tmpdir(), "airlock-index-host-"));
    await cp(repo, dir, { recursive: true });
    const started = performance.now();
    npm(dir, "ci");
    const result = spawnSync(process.execPath, [SCIP, "index", "--output", "index.scip"], { cwd: dir, env: baseEnv, encoding: "utf8" });
    if (result.status !== 0) throw new Error(`scip-typescript on the host exited with ${result.status}: ${result.stderr}`);
    // The first run fills the host's npm cache: a developer's machine has it warm.
    if (run > 0) times.push(performance.now() - started);
    await rm(dir, { recursive: true, force: true });
  }
  return times;
}

async function airlock(runtime: "bwrap" | "docker", warm: boolean): Promise<number[] | string> {
  const args = runtime === "bwrap" ? ["--images", TEST_IMAGES] : ["--docker-host", SOCKET];
  const cluster = await startCluster({ runtime, executorArgs: [...args, "--egress-allow", "registry.npmjs.org:443", ...(warm ? [] : ["--package-cache-max", "off"])] });
  try {
    await cluster.api.addRepository("oss/immer", repo);
    const times: number[] = [];
    for (let run = 0; run <= RUNS; run++) {
      await commitFile(repo, "BENCH.md", `run ${runtime} ${warm} ${run}\n`);
      const started = performance.now();
      const plan = await cluster.api.index({ repository: "oss/immer" });
      const id = plan.entries[0]!.index!.id;
      let index = await cluster.api.getIndex(id);
      while (index.state === "pending") {
        await new Promise((resolve) => setTimeout(resolve, 100));
        index = await cluster.api.getIndex(id);
      }
      if (index.state !== "completed") return `failed: ${index.failureMessage}`;
      if (run > 0) times.push(performance.now() - started);
    }
    return times;
  } finally {
    await cluster.close();
  }
}

const load = (await readFile("/proc/loadavg", "utf8")).trim();
const direct = median(await host());
const rows: (string | number)[][] = [["host (npm ci with a warm cache, scip-typescript)", direct.toFixed(0), "1.00", "-"]];
for (const runtime of ["bwrap", "docker"] as const) {
  for (const warm of [false, true]) {
    const result = await airlock(runtime, warm).catch((error: unknown) => `failed: ${(error as Error).message}`);
    const label = `airlock ${runtime}, ${warm ? "warm package cache" : "cold (no package cache)"}`;
    if (typeof result === "string") rows.push([label, result, "-", warm ? "<= 1.2" : "-"]);
    else rows.push([label, median(result).toFixed(0), (median(result) / direct).toFixed(2), warm ? "<= 1.2" : "-"]);
  }
}
console.log(`${PACKAGE}, ${Object.keys(files).filter((path) => path.endsWith(".ts")).length} source files, ${Object.keys(tarballs).length - 1} locked packages (${Object.keys(DEV_DEPENDENCIES).join(", ")}), median of ${RUNS} runs (ms); load before: ${load}; after: ${(await readFile("/proc/loadavg", "utf8")).trim()}`);
printTable(["run (request -> index registered)", "ms", "vs host", "target"], rows);
await rm(work, { recursive: true, force: true });
