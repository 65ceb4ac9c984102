/**
 * Workspace preparation: the job's repository at the job's commit, fetched through the
 * coordinator's git endpoint with the job token, and the spec's `files` written in.
 *
 * Layout of one job's directory (host only; runtimes mount `workspace/` alone):
 *   workspace/   the checkout, with its own copy of the git dir in workspace/.git
 *   git/         the executor's private git dir: fetched into, used for the diff afterwards
 *   sandbox/     scratch space for the runtime
 *
 * With a repository cache (repo-cache.ts), git/ borrows the objects of the executor's mirror of the
 * repository (hard links, host only) and workspace/.git is a real copy, so the job cannot reach the
 * mirror; jobs that fetch tags bypass the cache.
 *
 * The job token travels only in the environment of the git commands (GIT_CONFIG_* variables),
 * never in a git config file. The diff is later computed with the private git dir, whose config
 * and hooks the job cannot touch, so nothing a step writes into workspace/.git runs on the host.
 */
import { constants } from "node:fs";
import { cp, lstat, mkdir, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CommandError, gitEnv, run } from "../common/exec.ts";
import { StepFailedError, type JobPayload } from "../protocol/index.ts";
import type { JobClient } from "./client.ts";
import type { EntryStream } from "./log-shipper.ts";
import { writeGitDir, type RepoCache } from "./repo-cache.ts";

export interface JobDirs {
  root: string;
  workspace: string;
  gitDir: string;
  scratch: string;
}

export function jobDirs(root: string): JobDirs {
  return { root, workspace: join(root, "workspace"), gitDir: join(root, "git"), scratch: join(root, "sandbox") };
}

export interface PrepareOptions {
  hostPath: string;
  caPath: string | undefined;
  signal: AbortSignal;
  /** The executor's repository cache; undefined: every job fetches its repository afresh. */
  cache?: RepoCache | undefined;
}

/** Thrown for problems that are the job's own doing (a bad path), as opposed to infrastructure. */
export class WorkspaceRefusal extends StepFailedError {
  constructor(message: string) {
    super("prepare", undefined, message);
  }
}

/** Names the executor process a job dir belongs to, so a restarted executor removes only dead ones'. */
export const OWNER_FILE = "owner.pid";

/** The job's directory with its empty workspace and scratch dirs, owned by this executor process. */
export async function makeJobDirs(dirs: JobDirs): Promise<void> {
  // Asynchronous although each call is small: on a disk mounted with online discard, a mkdir can
  // wait milliseconds for the journal while other jobs' dirs are being removed.
  await mkdir(dirs.root, { recursive: true, mode: 0o700 });
  await Promise.all([
    writeFile(join(dirs.root, OWNER_FILE), String(process.pid)),
    mkdir(dirs.workspace, { mode: 0o755 }),
    mkdir(dirs.scratch, { mode: 0o700 }),
  ]);
}

/** Fills the workspace (made by `makeJobDirs`): the repository checked out, then the spec's files. */
export async function prepareWorkspace(job: JobPayload, dirs: JobDirs, client: JobClient, log: EntryStream, options: PrepareOptions): Promise<void> {
  if (job.repository) await checkout(job, dirs, client, log, options);
  for (const [path, file] of Object.entries(job.spec.files)) {
    await writeWorkspaceFile(dirs.workspace, path, Buffer.from(file.content, file.encoding === "base64" ? "base64" : "utf8"), file.mode ?? 0o644);
    log.write(`wrote ${path}\n`);
  }
}

async function checkout(job: JobPayload, dirs: JobDirs, client: JobClient, log: EntryStream, options: PrepareOptions): Promise<void> {
  const repository = job.repository;
  if (!repository) return;
  const remote = client.gitRemote();
  const auth = {
    GIT_CONFIG_COUNT: "1",
    GIT_CONFIG_KEY_0: "http.extraHeader",
    GIT_CONFIG_VALUE_0: remote.authHeader,
    ...(options.caPath ? { GIT_SSL_CAINFO: options.caPath } : {}),
  };
  const env = gitEnv({ PATH: options.hostPath }, { GIT_DIR: dirs.gitDir, GIT_WORK_TREE: dirs.workspace });
  const git = async (args: string[], withAuth = false): Promise<void> => {
    log.write(`$ git ${args.join(" ")}\n`);
    const started = Date.now();
    const result = await run("git", args, {
      env: withAuth ? { ...env, ...auth } : env,
      signal: options.signal,
      onOutput: (chunk) => log.write(chunk),
    });
    if (result.code !== 0) throw new CommandError(`git ${args[0] ?? ""}`, result);
    log.write(`  (${Date.now() - started} ms)\n`);
  };

  const sparse = job.spec.sparseCheckout;
  const initGitDir = async (): Promise<void> => {
    // Written directly rather than with `git init` and one `git config` per key: each git process costs ~15 ms.
    await writeGitDir(dirs.gitDir, `[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n${gitConfigText(remote.url, Boolean(sparse))}`);
    if (sparse) {
      await mkdir(join(dirs.gitDir, "info"), { recursive: true });
      await writeFile(join(dirs.gitDir, "info", "sparse-checkout"), `${sparse.join("\n")}\n`);
    }
  };
  const cache = job.spec.fetchTags ? undefined : options.cache;
  if (cache) {
    const fromCache = async (): Promise<void> => {
      await initGitDir();
      await cache.provide(repository.name, repository.commit, join(dirs.gitDir, "objects"), { remoteUrl: remote.url, authEnv: auth, signal: options.signal, log: (text) => log.write(text) });
      if (job.spec.shallowClone) await writeFile(join(dirs.gitDir, "shallow"), `${repository.commit}\n`);
      await git(["checkout", "--quiet", "--force", repository.commit]);
    };
    try {
      await fromCache();
    } catch (error) {
      // A fetch failure is not the mirror's fault (provide rebuilds a corrupt one itself); a checkout
      // failure from objects it has is: drop the mirror and start over once.
      if (options.signal.aborted || (error instanceof CommandError && error.message.startsWith("git fetch"))) throw error;
      log.write(`repository cache: checkout failed (${error instanceof Error ? error.message : String(error)}); rebuilding the mirror\n`);
      await cache.discard(repository.name);
      await rm(dirs.gitDir, { recursive: true, force: true });
      // Emptied, not replaced: a sandbox made meanwhile may already have the directory mounted.
      for (const entry of await readdir(dirs.workspace)) await rm(join(dirs.workspace, entry), { recursive: true, force: true });
      await fromCache();
    }
  } else {
    await initGitDir();
    await fetchInto(job, git);
  }
  // The workspace gets its own copy of the git dir so tools inside the sandbox can use git;
  // the remote there names the repository instead of the coordinator's endpoint.
  await cp(dirs.gitDir, join(dirs.workspace, ".git"), { recursive: true, verbatimSymlinks: true });
  const copied = await readFile(join(dirs.workspace, ".git", "config"), "utf8");
  await writeFile(join(dirs.workspace, ".git", "config"), copied.replace(gitConfigText(remote.url, Boolean(sparse)), gitConfigText(repository.name, Boolean(sparse))));
  log.write(`checked out ${repository.name} at ${repository.commit}\n`);
}

async function fetchInto(job: JobPayload, git: (args: string[], withAuth?: boolean) => Promise<void>): Promise<void> {
  const commit = job.repository?.commit ?? "";
  const sparse = job.spec.sparseCheckout;
  const fetchArgs = ["-c", "protocol.version=2", "fetch", "--no-progress", "--no-recurse-submodules"];
  if (job.spec.fetchTags) fetchArgs.push("--tags");
  if (job.spec.shallowClone) fetchArgs.push("--depth=1", ...(job.spec.fetchTags ? [] : ["--no-tags"]));
  else if (!job.spec.fetchTags) fetchArgs.push("--no-tags");
  if (sparse) fetchArgs.push("--filter=blob:none");
  await git([...fetchArgs, "origin", commit], true);
  await git(["-c", "protocol.version=2", "checkout", "--quiet", "--force", commit], true);
}

function gitConfigText(remoteUrl: string, sparse: boolean): string {
  const sparseLines = sparse ? "\tsparseCheckout = true\n\tsparseCheckoutCone = false\n" : "";
  return `[core]\n\tbare = false\n${sparseLines}[gc]\n\tauto = 0\n[remote "origin"]\n\turl = ${remoteUrl}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n`;
}

/**
 * Writes a file inside `root`, refusing any path whose existing components are symlinks (a
 * checked-out repository may contain links pointing anywhere) and never following one at the end.
 */
export async function writeWorkspaceFile(root: string, relative: string, content: Uint8Array, mode: number): Promise<void> {
  const parts = relative.split("/");
  let current = root;
  for (const part of parts.slice(0, -1)) {
    current = join(current, part);
    const info = await lstat(current).catch(() => undefined);
    if (!info) await mkdir(current);
    else if (info.isSymbolicLink()) throw new WorkspaceRefusal(`refusing to write ${relative}: ${current.slice(root.length + 1)} is a symlink`);
    else if (!info.isDirectory()) throw new WorkspaceRefusal(`refusing to write ${relative}: ${current.slice(root.length + 1)} is not a directory`);
  }
  const target = join(root, relative);
  const handle = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, mode).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ELOOP") throw new WorkspaceRefusal(`refusing to write ${relative}: it is a symlink`);
    throw error;
  });
  try {
    await handle.writeFile(content);
    await handle.chmod(mode);
  } finally {
    await handle.close();
  }
}

/** Opens a regular file inside `root` for reading, with the same symlink refusals as writes. */
export async function openWorkspaceFile(root: string, relative: string): Promise<{ size: number; stream: NodeJS.ReadableStream }> {
  let current = root;
  for (const part of relative.split("/").slice(0, -1)) {
    current = join(current, part);
    const info = await lstat(current).catch(() => undefined);
    if (!info) throw new WorkspaceRefusal(`output ${relative} does not exist`);
    if (!info.isDirectory() || info.isSymbolicLink()) throw new WorkspaceRefusal(`refusing to read ${relative}: ${current.slice(root.length + 1)} is not a plain directory`);
  }
  const handle = await open(join(root, relative), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") throw new WorkspaceRefusal(`output ${relative} does not exist`);
    if (error.code === "ELOOP") throw new WorkspaceRefusal(`refusing to read ${relative}: it is a symlink`);
    throw error;
  });
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    throw new WorkspaceRefusal(`output ${relative} is not a regular file`);
  }
  return { size: info.size, stream: handle.createReadStream() };
}
