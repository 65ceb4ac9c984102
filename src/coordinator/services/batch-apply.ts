/**
 * Applying a batch: for each chosen completed entry with a non-empty diff, one commit (message
 * and author from the changeset template) on top of the entry's commit, on the template's branch,
 * pushed to the repository's origin (the source it is mirrored from); the mirror's branch is
 * updated too. The commit is built in the mirror with a throwaway index (`git apply --cached`,
 * `write-tree`, `commit-tree`): no checkout.
 *
 * Per entry, against what the origin has now (`git ls-remote`):
 *   branch at a commit whose parent is the entry's commit and whose tree is ours -> unchanged
 *   branch at anything else                        -> conflict (someone else's commits)
 *   base branch no longer at the entry's commit    -> conflict (preview again)
 *   otherwise push with --force-with-lease=<branch>: (it must not exist) -> pushed, or conflict
 *     when it appeared meanwhile
 * Results are stored on each entry. Entries of one repository go in turn, repositories in
 * parallel; applies of one batch are serialized in this process.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Clock } from "../../common/clock.ts";
import { gitEnv, run, type RunResult } from "../../common/exec.ts";
import type { Logger } from "../../common/logger.ts";
import { ApplyRequest, type ApplyResponse, type ApplyResult, type BatchSpec } from "../../protocol/batch.ts";
import { renderTemplate, summarizeDiff, TemplateError, validationErrorFrom, ValidationError, type TemplateContext, type TemplateValue } from "../../protocol/index.ts";
import type { BatchApplyRecord, BatchEntryRecord, Store } from "../../store/index.ts";
import { mapLimit } from "./batch-targets.ts";
import type { BatchService } from "./batches.ts";
import type { Repositories } from "./repositories.ts";

interface Planned {
  entry: BatchEntryRecord;
  diff: string;
  branch: string;
  message: string;
  author: { name: string; email: string };
}

export interface BatchApplierOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  repositories: Repositories;
  batches: BatchService;
  hostEnv: Readonly<Record<string, string | undefined>>;
  /** git's credential.helper for talking to origins (see CoordinatorConfig.gitCredentialHelper). */
  credentialHelper?: string | undefined;
}

class ApplyProblem extends Error {
  readonly state: "conflict" | "failed";
  constructor(state: "conflict" | "failed", message: string) {
    super(message);
    this.state = state;
  }
}

export class BatchApplier {
  private readonly options: BatchApplierOptions;
  private readonly running = new Map<string, Promise<unknown>>();

  constructor(options: BatchApplierOptions) {
    this.options = options;
  }

  async apply(name: string, body: unknown): Promise<ApplyResponse> {
    const parsed = ApplyRequest.safeParse(body ?? {});
    if (!parsed.success) throw validationErrorFrom(parsed.error, "invalid apply request");
    const previous = this.running.get(name) ?? Promise.resolve();
    const mine = previous.catch(() => undefined).then(() => this.applyNow(name, parsed.data));
    this.running.set(name, mine);
    try {
      return await mine;
    } finally {
      if (this.running.get(name) === mine) this.running.delete(name);
    }
  }

  private async applyNow(name: string, request: ApplyRequest): Promise<ApplyResponse> {
    const { batches, store, clock } = this.options;
    const { batch, version, entries } = await batches.entries(name, request.version);
    const spec = version.spec as BatchSpec;
    if (request.repositories) {
      const missing = request.repositories.filter((repository) => !entries.some((entry) => entry.repository === repository));
      if (missing.length > 0) throw new ValidationError(`batch "${name}" version ${version.version} has no entry for ${missing.join(", ")}`, { field: "repositories" });
    }
    const chosen = entries.filter((entry) => entry.state === "completed" && (!request.repositories || request.repositories.includes(entry.repository)));
    const planned: Planned[] = [];
    const results: ApplyResult[] = [];
    const record = async (entry: BatchEntryRecord, result: Omit<BatchApplyRecord, "at">): Promise<void> => {
      await store.batches.updateEntry(entry.id, { apply: { ...result, at: clock.now() } }, clock.now());
      results.push({ entryId: entry.id, repository: entry.repository, workspace: entry.workspace, branch: result.branch, state: result.state, sha: result.sha, message: result.message });
    };
    for (const entry of chosen) {
      const diff = await batches.diffOf(entry);
      if (diff === "") continue;
      try {
        planned.push({ entry, diff, ...this.changeset(spec, entry, diff, await batches.outputsOf(entry)) });
      } catch (error) {
        await record(entry, { state: "failed", branch: "", sha: null, message: (error as Error).message });
      }
    }
    // Two workspaces of one repository may not share a branch: each would replace the other's commit.
    const byBranch = new Map<string, Planned[]>();
    for (const item of planned) byBranch.set(`${item.entry.repository}\0${item.branch}`, [...(byBranch.get(`${item.entry.repository}\0${item.branch}`) ?? []), item]);
    const runnable: Planned[] = [];
    for (const group of byBranch.values()) {
      if (group.length === 1) runnable.push(group[0]!);
      else {
        for (const item of group) {
          const message = `branch ${item.branch} is the target of ${group.length} workspaces of ${item.entry.repository} (${group.map((other) => other.entry.workspace).join(", ")}); put \${{ steps.path }} in changesetTemplate.branch`;
          await record(item.entry, { state: "failed", branch: item.branch, sha: null, message });
        }
      }
    }
    const byRepository = new Map<string, Planned[]>();
    for (const item of runnable) byRepository.set(item.entry.repository, [...(byRepository.get(item.entry.repository) ?? []), item]);
    await mapLimit([...byRepository.values()], 4, async (items) => {
      for (const item of items) {
        try {
          const outcome = await this.applyOne(item);
          await record(item.entry, { branch: item.branch, ...outcome });
        } catch (error) {
          const problem = error instanceof ApplyProblem ? error : new ApplyProblem("failed", (error as Error).message);
          await record(item.entry, { state: problem.state, branch: item.branch, sha: null, message: problem.message });
        }
      }
    });
    results.sort((a, b) => (a.repository === b.repository ? (a.workspace < b.workspace ? -1 : 1) : a.repository < b.repository ? -1 : 1));
    this.options.logger.info("batch applied", { batch: name, version: version.version, results: results.map((result) => `${result.repository}:${result.state}`).join(" ") });
    return { results, batch: await batches.view(batch.name, version.version) };
  }

  /** The entry's branch, message and author from the changeset template. */
  private changeset(spec: BatchSpec, entry: BatchEntryRecord, diff: string, outputs: Record<string, unknown>): Omit<Planned, "entry" | "diff"> {
    const files = summarizeDiff(diff);
    const context: TemplateContext = {
      repository: { name: entry.repository, branch: entry.branch },
      batch: { name: spec.name, description: spec.description },
      steps: { path: entry.workspace, modified_files: files.modifiedFiles, added_files: files.addedFiles, deleted_files: files.deletedFiles },
      outputs: outputs as Record<string, TemplateValue>,
    };
    const render = (text: string, field: string): string => {
      try {
        return renderTemplate(text, context);
      } catch (error) {
        if (error instanceof TemplateError) throw new Error(`changesetTemplate.${field}: ${error.message}`, { cause: error });
        throw error;
      }
    };
    const template = spec.changesetTemplate;
    const branch = render(template.branch, "branch").trim();
    if (!/^[A-Za-z0-9._/-]+$/.test(branch) || branch.startsWith("-") || branch.includes("..") || branch.endsWith(".lock") || branch.endsWith("/") || branch.startsWith("/") || branch.includes("//")) {
      throw new Error(`changesetTemplate.branch renders to "${branch}", which is not a valid branch name`);
    }
    return {
      branch,
      message: render(template.commit.message, "commit.message"),
      author: { name: render(template.commit.author.name, "commit.author.name"), email: render(template.commit.author.email, "commit.author.email") },
    };
  }

  private async git(cwd: string, args: string[], extra: Record<string, string> = {}, input?: string): Promise<RunResult> {
    const helper = this.options.credentialHelper;
    const credentials: Record<string, string> = helper ? { GIT_CONFIG_COUNT: "1", GIT_CONFIG_KEY_0: "credential.helper", GIT_CONFIG_VALUE_0: helper } : {};
    return run("git", args, { cwd, env: gitEnv(this.options.hostEnv, { ...credentials, ...extra }), ...(input !== undefined ? { input } : {}) });
  }

  private async applyOne(item: Planned): Promise<Omit<BatchApplyRecord, "at" | "branch">> {
    const { entry } = item;
    const record = await this.options.store.repositories.get(entry.repository);
    if (!record) throw new ApplyProblem("failed", `repository ${entry.repository} is no longer registered`);
    const mirror = await this.options.repositories.ensureCommit(entry.repository, entry.commit);
    const origin = record.source;
    const remote = await this.git(mirror, ["ls-remote", "--", origin, `refs/heads/${entry.branch}`, `refs/heads/${item.branch}`]);
    if (remote.code !== 0) throw new ApplyProblem("failed", `cannot reach the origin ${origin}: ${remote.stderr.trim().split("\n").pop() ?? ""}`);
    const heads = new Map(
      remote.stdout
        .toString()
        .split("\n")
        .filter(Boolean)
        .map((line) => {
          const [sha, ref] = line.split("\t");
          return [ref ?? "", sha ?? ""] as const;
        }),
    );
    const tree = await this.buildTree(mirror, entry.commit, item.diff);
    const existing = heads.get(`refs/heads/${item.branch}`);
    if (existing) {
      if (!(await this.hasCommit(mirror, existing))) await this.git(mirror, ["fetch", "--quiet", "--no-write-fetch-head", "--", origin, `refs/heads/${item.branch}`]);
      const shape = await this.git(mirror, ["log", "-1", "--format=%T %P", existing]);
      const [existingTree, ...parents] = shape.stdout.toString().trim().split(" ");
      if (shape.code === 0 && existingTree === tree && parents.length === 1 && parents[0] === entry.commit) {
        await this.git(mirror, ["update-ref", `refs/heads/${item.branch}`, existing]);
        return { state: "unchanged", sha: existing, message: `branch ${item.branch} already has this change` };
      }
      throw new ApplyProblem("conflict", `branch ${item.branch} on the origin is at ${existing.slice(0, 12)}, which is not this batch's change on ${entry.commit.slice(0, 12)} (commits were pushed to it)`);
    }
    const base = heads.get(`refs/heads/${entry.branch}`);
    if (base !== undefined && base !== entry.commit) {
      throw new ApplyProblem("conflict", `the base branch ${entry.branch} moved from ${entry.commit.slice(0, 12)} to ${base.slice(0, 12)} since the preview; preview again`);
    }
    const identity = { GIT_AUTHOR_NAME: item.author.name, GIT_AUTHOR_EMAIL: item.author.email, GIT_COMMITTER_NAME: item.author.name, GIT_COMMITTER_EMAIL: item.author.email };
    const commit = await this.git(mirror, ["commit-tree", tree, "-p", entry.commit, "-F", "-"], identity, item.message.endsWith("\n") ? item.message : `${item.message}\n`);
    if (commit.code !== 0) throw new ApplyProblem("failed", `git commit-tree failed: ${commit.stderr.trim()}`);
    const sha = commit.stdout.toString().trim();
    const push = await this.git(mirror, ["push", "--porcelain", "--quiet", `--force-with-lease=refs/heads/${item.branch}:`, "--", origin, `${sha}:refs/heads/${item.branch}`]);
    if (push.code !== 0) {
      const detail = `${push.stdout.toString()}\n${push.stderr}`.trim().split("\n").filter((line) => line.trim() !== "" && line !== "Done").pop() ?? "";
      const state = /stale info|rejected|already exists|fetch first|non-fast-forward/.test(detail) ? "conflict" : "failed";
      throw new ApplyProblem(state, `push to ${origin} failed: ${detail}`);
    }
    await this.git(mirror, ["update-ref", `refs/heads/${item.branch}`, sha]);
    return { state: "pushed", sha, message: null };
  }

  private async hasCommit(mirror: string, sha: string): Promise<boolean> {
    return (await this.git(mirror, ["cat-file", "-e", `${sha}^{commit}`])).code === 0;
  }

  /** The tree of the entry's commit with its diff applied, built with a throwaway index. */
  private async buildTree(mirror: string, commit: string, diff: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "airlock-apply-"));
    const index = { GIT_INDEX_FILE: join(dir, "index") };
    try {
      const read = await this.git(mirror, ["read-tree", commit], index);
      if (read.code !== 0) throw new ApplyProblem("failed", `git read-tree failed: ${read.stderr.trim()}`);
      const applied = await this.git(mirror, ["apply", "--cached", "--binary", "--whitespace=nowarn", "-"], index, diff);
      if (applied.code !== 0) throw new ApplyProblem("failed", `the diff does not apply to ${commit.slice(0, 12)}: ${applied.stderr.trim().split("\n")[0] ?? ""}`);
      const tree = await this.git(mirror, ["write-tree"], index);
      if (tree.code !== 0) throw new ApplyProblem("failed", `git write-tree failed: ${tree.stderr.trim()}`);
      return tree.stdout.toString().trim();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
