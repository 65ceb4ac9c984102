/**
 * Job outputs, collected after the last step: the repository's diff against the job's commit
 * (new, deleted and binary files included) and the declared output paths, each uploaded as an
 * artifact with secrets redacted.
 *
 * The diff runs git with the executor's private git dir and a throwaway index, so it sees the
 * workspace's files but none of the config, hooks or attributes drivers a step could have planted
 * in workspace/.git. A repository nested in the workspace (a directory holding a `.git` of any
 * kind) is left out of the diff: adding it would make git read its `.git`, which may point
 * anywhere on the host (`gitdir: /elsewhere`), and put that repository's HEAD in the diff.
 */
import { spawn } from "node:child_process";
import { copyFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { gitEnv, runChecked } from "../common/exec.ts";
import type { JobPayload } from "../protocol/index.ts";
import type { JobClient } from "./client.ts";
import type { EntryStream } from "./log-shipper.ts";
import { Redactor } from "./redactor.ts";
import { openWorkspaceFile, WorkspaceRefusal, type JobDirs } from "./workspace.ts";

/** Passes a byte stream through a fresh Redactor. */
export async function* redacted(source: AsyncIterable<Uint8Array>, secrets: string[]): AsyncIterable<Uint8Array> {
  const redactor = new Redactor(secrets);
  for await (const chunk of source) {
    const out = redactor.push(chunk);
    if (out.length > 0) yield out;
  }
  const rest = redactor.end();
  if (rest.length > 0) yield rest;
}

export async function collectOutputs(job: JobPayload, dirs: JobDirs, client: JobClient, log: EntryStream, options: { hostPath: string; secrets: string[] }): Promise<void> {
  if (job.spec.outputs.diff && job.repository) {
    const bytes = await uploadDiff(job, dirs, client, log, options);
    log.write(`uploaded artifact diff (${bytes} bytes)\n`);
  }
  for (const path of job.spec.outputs.paths) {
    try {
      const file = await openWorkspaceFile(dirs.workspace, path);
      await client.uploadArtifact(path, redacted(file.stream as AsyncIterable<Uint8Array>, options.secrets));
      log.write(`uploaded artifact ${path} (${file.size} bytes)\n`);
    } catch (error) {
      if (!(error instanceof WorkspaceRefusal)) throw error;
      log.write(`warning: ${error.message}; no artifact for it\n`);
    }
  }
}

/** `outputs.diffPaths` (a monorepo workspace) as a pathspec limiting the diff; none means everything. */
function diffPathspec(job: JobPayload): string[] {
  const paths = job.spec.outputs.diffPaths;
  return paths && paths.length > 0 && !paths.includes(".") ? ["--", ...paths.map((path) => `:(literal)${path}`)] : [];
}

/** Directories below `root` that hold a `.git` entry (the workspace's own excepted); not followed into. */
export async function nestedRepositories(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(join(root, relative), { withFileTypes: true }).catch(() => []);
    if (relative !== "" && entries.some((entry) => entry.name === ".git")) {
      found.push(relative);
      return;
    }
    for (const entry of entries) {
      if (entry.isDirectory() && !(relative === "" && entry.name === ".git")) await walk(relative === "" ? entry.name : `${relative}/${entry.name}`);
    }
  };
  await walk("");
  return found;
}

async function uploadDiff(job: JobPayload, dirs: JobDirs, client: JobClient, log: EntryStream, options: { hostPath: string; secrets: string[] }): Promise<number> {
  const nested = await nestedRepositories(dirs.workspace);
  for (const path of nested) log.write(`the diff leaves out ${path}: it is a git repository of its own\n`);
  const index = join(dirs.root, "diff.index");
  await copyFile(join(dirs.gitDir, "index"), index);
  const env = gitEnv({ PATH: options.hostPath }, { GIT_DIR: dirs.gitDir, GIT_WORK_TREE: dirs.workspace, GIT_INDEX_FILE: index });
  // Ignored files stay out of the diff, as they would for anyone running `git diff` by hand.
  await runChecked("git", ["add", "--all", "--", ".", ...nested.map((path) => `:(exclude,literal)${path}`)], { env, cwd: dirs.workspace });
  const child = spawn("git", ["diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--full-index", job.repository?.commit ?? "HEAD", ...diffPathspec(job)], {
    env,
    cwd: dirs.workspace,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  let bytes = 0;
  async function* counted(): AsyncIterable<Uint8Array> {
    for await (const chunk of child.stdout as AsyncIterable<Uint8Array>) {
      bytes += chunk.byteLength;
      yield chunk;
    }
  }
  await client.uploadArtifact("diff", redacted(counted(), options.secrets));
  const code = await exited;
  if (code !== 0) throw new Error(`git diff failed (${code}): ${stderr.trim()}`);
  return bytes;
}
