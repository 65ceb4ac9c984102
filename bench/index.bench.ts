/**
 * Indexing the same real package (immer's TypeScript sources, fetched with `npm pack`):
 * scip-typescript run directly on the host (the image's copy of it, with the host's Node) vs
 * through Airlock (`airlock index` -> a job in bwrap or docker -> the index registered), each run
 * on a fresh commit so nothing is reused. Target (docs/indexing.md): Airlock <= 1.2x the host
 * run with a warm dependency cache; there is no dependency cache yet, and immer installs nothing,
 * so every run is the same. Needs the airlock-test/node-indexer image and the npm registry.
 *   scripts/bench.sh index        (BENCH_INDEX_RUNS, default 3)
 */
import { spawnSync } from "node:child_process";
import { cp, mkdtemp, rm } from "node:fs/promises";
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

if (!existsSync(SCIP)) {
  console.log(`skipped: the airlock-test/node-indexer image is missing in ${TEST_IMAGES} (scripts/test-images.sh builds it)`);
  process.exit(0);
}

const work = await tempDir("airlock-index-bench-");
const files = await publishedSources(join(work, "pack"));
const repo = await makeRepo(join(work, "immer"), files);

async function host(): Promise<number[]> {
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const dir = await mkdtemp(join(tmpdir(), "airlock-index-host-"));
    await cp(repo, dir, { recursive: true });
    const started = performance.now();
    const result = spawnSync(process.execPath, [SCIP, "index", "--output", "index.scip"], { cwd: dir, env: baseEnv, encoding: "utf8" });
    if (result.status !== 0) throw new Error(`scip-typescript on the host exited with ${result.status}: ${result.stderr}`);
    times.push(performance.now() - started);
    await rm(dir, { recursive: true, force: true });
  }
  return times;
}

async function airlock(runtime: "bwrap" | "docker"): Promise<number[] | string> {
  const args = runtime === "bwrap" ? ["--images", TEST_IMAGES] : ["--docker-host", SOCKET];
  const cluster = await startCluster({ runtime, executorArgs: [...args, "--egress-allow", "registry.npmjs.org:443"] });
  try {
    await cluster.api.addRepository("oss/immer", repo);
    const times: number[] = [];
    for (let run = 0; run <= RUNS; run++) {
      await commitFile(repo, "BENCH.md", `run ${runtime} ${run}\n`);
      const started = performance.now();
      const plan = await cluster.api.index({ repository: "oss/immer" });
      const id = plan.entries[0]!.index!.id;
      let index = await cluster.api.getIndex(id);
      while (index.state === "pending") {
        await new Promise((resolve) => setTimeout(resolve, 100));
        index = await cluster.api.getIndex(id);
      }
      if (index.state !== "completed") return `failed: ${index.failureMessage}`;
      // The first run warms the image cache (bwrap unpacks the image once); it is not counted.
      if (run > 0) times.push(performance.now() - started);
    }
    return times;
  } finally {
    await cluster.close();
  }
}

const direct = median(await host());
const rows: (string | number)[][] = [["host (scip-typescript directly)", direct.toFixed(0), "1.00"]];
for (const runtime of ["bwrap", "docker"] as const) {
  const result = await airlock(runtime).catch((error: unknown) => `failed: ${(error as Error).message}`);
  if (typeof result === "string") rows.push([`airlock ${runtime}`, result, "-"]);
  else rows.push([`airlock ${runtime} (request -> index registered)`, median(result).toFixed(0), (median(result) / direct).toFixed(2)]);
}
console.log(`${PACKAGE}, ${Object.keys(files).filter((path) => path.endsWith(".ts")).length} source files, median of ${RUNS} runs (ms)`);
printTable(["run", "ms", "vs host"], rows);
await rm(work, { recursive: true, force: true });
