/**
 * The whole-job figure the runtime benchmarks share: a 3-step job (sed, grep, wc) on a 3-file
 * repository, timed from submit to completed, after one warm-up run (image unpacked or pulled).
 */
import { join } from "node:path";
import type { Isolation } from "../src/protocol/index.ts";
import { makeRepo, waitForJob, type Cluster } from "../test/helpers/cluster.ts";

/** The 3-file repository the whole-job figures use. */
export const SMALL_REPO_FILES = { "README.md": "# bench\n", "src/a.txt": "foo bar\n", "src/b.txt": "foo baz\n" };

/** Three tiny steps on SMALL_REPO_FILES with a diff output. */
export function wholeJobSpec(isolation: string, image: string | undefined) {
  return {
    repository: "bench/small",
    isolation,
    steps: [
      { key: "rewrite", image, commands: ["sed -i s/foo/qux/ src/a.txt src/b.txt"] },
      { key: "check", image, commands: ["grep -r qux src"] },
      { key: "count", image, commands: ["wc -l src/a.txt src/b.txt > counts.txt"] },
    ],
    outputs: { diff: true },
  };
}

export async function timeWholeJobs(cluster: Cluster, isolation: Isolation, image: string, runs: number): Promise<{ jobs: number[]; steps: number[] }> {
  const repo = await makeRepo(join(cluster.dir, "repo"), SMALL_REPO_FILES);
  await cluster.api.addRepository("bench/small", repo);
  const spec = wholeJobSpec(isolation, image);
  const jobs: number[] = [];
  const steps: number[] = [];
  for (let run = 0; run < runs + 1; run += 1) {
    const started = performance.now();
    const submitted = await cluster.api.submit(spec);
    const job = await waitForJob(cluster.api, submitted.id, undefined, 120_000);
    const elapsed = performance.now() - started;
    if (job.state !== "completed") throw new Error(`bench job ${job.id} ended ${job.state}: ${job.failureMessage ?? ""}`);
    if (run === 0) continue;
    jobs.push(elapsed);
    steps.push(job.steps.filter((entry) => !["prepare", "finalize"].includes(entry.key)).reduce((sum, entry) => sum + (entry.durationMs ?? 0), 0));
  }
  return { jobs, steps };
}
