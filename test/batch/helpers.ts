/** Fixtures for the batch tests: many small repositories, expected diffs computed by git, waiting for a batch. */
import assert from "node:assert/strict";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { ApiClient } from "../../src/cli/api-client.ts";
import { gitEnv, run, runChecked } from "../../src/common/exec.ts";
import type { BatchView } from "../../src/protocol/batch.ts";
import { isTerminal } from "../../src/protocol/index.ts";
import { baseEnv, makeRepo } from "../helpers/cluster.ts";

export const git = async (cwd: string, ...args: string[]): Promise<string> => (await runChecked("git", args, { cwd, env: gitEnv(baseEnv) })).stdout.toString("utf8");
export const gitMaybe = async (cwd: string, ...args: string[]) => run("git", args, { cwd, env: gitEnv(baseEnv) });

/** Makes `count` repositories `acme/repo-NN` under `dir` (several files each) and registers them. */
export async function makeRepos(api: ApiClient, dir: string, count: number, files: (index: number, name: string) => Record<string, string>): Promise<Map<string, string>> {
  const paths = new Map<string, string>();
  for (let index = 1; index <= count; index += 1) {
    const name = `acme/repo-${String(index).padStart(2, "0")}`;
    const path = await makeRepo(join(dir, "origins", name), files(index, name));
    await api.addRepository(name, path);
    paths.set(name, path);
  }
  return paths;
}

/**
 * The diff git itself gives for a repository whose files become `after` (a path -> content map,
 * null deletes): the exact bytes an executor's diff must equal.
 */
export async function expectedDiff(origin: string, scratch: string, after: Record<string, string | null>): Promise<string> {
  await rm(scratch, { recursive: true, force: true });
  await git(dirname(origin), "clone", "--quiet", origin, scratch);
  for (const [path, content] of Object.entries(after)) {
    if (content === null) await rm(join(scratch, path), { force: true });
    else {
      await mkdir(dirname(join(scratch, path)), { recursive: true });
      await writeFile(join(scratch, path), content);
    }
  }
  await git(scratch, "add", "--all");
  const diff = await git(scratch, "diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--full-index", "HEAD");
  await rm(scratch, { recursive: true, force: true });
  return diff;
}

/** Polls the batch's version until every entry ended. */
export async function waitForBatch(api: ApiClient, name: string, version?: number, timeoutMs = 120_000): Promise<BatchView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view = await api.getBatch(name, version);
    if (view.entries.every((entry) => isTerminal(entry.state))) return view;
    if (Date.now() > deadline) assert.fail(`batch ${name} did not end in ${timeoutMs} ms: ${JSON.stringify(view.counts)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
