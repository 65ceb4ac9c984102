/**
 * From a batch spec to what runs: the repositories its `on:` names (names, globs,
 * `repositoriesMatching`), each at the commit its branch points to now, split into workspaces by
 * the `workspaces:` rules; for each, the cache key and the job spec an executor gets.
 *
 * Errors name the spec's field and line and are raised before anything is stored.
 */
import { createHash } from "node:crypto";
import { posix } from "node:path";
import { gitEnv, run } from "../../common/exec.ts";
import { batchSpecError, type BatchSpec } from "../../protocol/batch.ts";
import {
  globToRegExp,
  hasGlob,
  JobSpecInput,
  renderTemplate,
  type JobSpec,
  type TemplateContext,
} from "../../protocol/index.ts";
import type { Repositories } from "./repositories.ts";

export interface BatchTarget {
  repository: string;
  branch: string;
  commit: string;
  /** "." for the repository root. */
  workspace: string;
  onlyFetchWorkspace: boolean;
}

const PARALLEL = 8;

/** Runs `fn` over `items`, at most `limit` at once, keeping the order of results. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next;
      next += 1;
      results[index] = await fn(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export class BatchTargets {
  private readonly repositories: Repositories;
  private readonly hostEnv: Readonly<Record<string, string | undefined>>;

  constructor(options: { repositories: Repositories; hostEnv: Readonly<Record<string, string | undefined>> }) {
    this.repositories = options.repositories;
    this.hostEnv = options.hostEnv;
  }

  private async git(name: string, args: string[]): Promise<{ code: number | null; stdout: Buffer }> {
    const cwd = await this.repositories.ensureMirror(name);
    return run("git", args, { cwd, env: gitEnv(this.hostEnv) });
  }

  /** The branch a mirror's HEAD names ("main"), or "HEAD" when it is detached. */
  async defaultBranch(name: string): Promise<string> {
    const result = await this.git(name, ["symbolic-ref", "--quiet", "--short", "HEAD"]);
    return result.code === 0 ? result.stdout.toString().trim() : "HEAD";
  }

  /** Every workspace the spec runs on, in the order of `on:`, each once. */
  async resolve(spec: BatchSpec, text: string): Promise<{ targets: BatchTarget[]; warnings: string[] }> {
    const registered = (await this.repositories.list()).map((record) => record.name);
    const known = new Set(registered);
    const wanted: { repository: string; branch: string | undefined }[] = [];
    const unknown: { name: string; index: number }[] = [];
    const commits = new Map<string, Promise<{ branch: string; commit: string }>>();
    const resolveRef = (repository: string, branch: string | undefined) => {
      const key = `${repository}\0${branch ?? ""}`;
      let promise = commits.get(key);
      if (!promise) {
        promise = (async () => {
          const name = branch ?? (await this.defaultBranch(repository));
          return { branch: name, commit: await this.repositories.resolveCommit(repository, name) };
        })();
        commits.set(key, promise);
      }
      return promise;
    };

    for (const [index, entry] of spec.on.entries()) {
      if ("repository" in entry) {
        if (hasGlob(entry.repository)) {
          const pattern = globToRegExp(entry.repository);
          const matched = registered.filter((name) => pattern.test(name));
          if (matched.length === 0) throw batchSpecError(text, ["on", index], `"${entry.repository}" matches no registered repository`);
          for (const name of matched) wanted.push({ repository: name, branch: entry.branch });
        } else if (!known.has(entry.repository)) {
          unknown.push({ name: entry.repository, index });
        } else {
          wanted.push({ repository: entry.repository, branch: entry.branch });
        }
        continue;
      }
      const { path, in: among } = entry.repositoriesMatching;
      const pattern = globToRegExp(among ?? "**");
      const candidates = registered.filter((name) => pattern.test(name));
      const has = await mapLimit(candidates, PARALLEL, async (name) => {
        const { commit } = await resolveRef(name, undefined);
        return (await this.git(name, ["cat-file", "-e", `${commit}:${path}`])).code === 0;
      });
      const matched = candidates.filter((_name, at) => has[at]);
      if (matched.length === 0) {
        throw batchSpecError(text, ["on", index, "repositoriesMatching"], `no registered repository${among ? ` matching "${among}"` : ""} has ${path} at HEAD`);
      }
      for (const name of matched) wanted.push({ repository: name, branch: undefined });
    }
    if (unknown.length > 0) {
      throw batchSpecError(text, ["on", unknown[0]!.index], `unknown repositories: ${unknown.map((item) => item.name).join(", ")} (register them with \`airlock repo add\`)`);
    }

    const seen = new Set<string>();
    const unique = wanted.filter((item) => {
      const key = `${item.repository}\0${item.branch ?? ""}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    const warnings: string[] = [];
    const perRepository = await mapLimit(unique, PARALLEL, async (item): Promise<BatchTarget[]> => {
      const { branch, commit } = await resolveRef(item.repository, item.branch);
      const rule = spec.workspaces.find((candidate) => globToRegExp(candidate.in).test(item.repository));
      if (!rule) return [{ repository: item.repository, branch, commit, workspace: ".", onlyFetchWorkspace: false }];
      const listing = await this.git(item.repository, ["ls-tree", "-r", "-z", "--name-only", commit]);
      const dirs = listing.stdout
        .toString("utf8")
        .split("\0")
        .filter((path) => path !== "" && posix.basename(path) === rule.rootAtLocationOf)
        .map((path) => posix.dirname(path))
        .sort();
      if (dirs.length === 0) warnings.push(`${item.repository}: no ${rule.rootAtLocationOf} anywhere, so no workspace to run in`);
      return dirs.map((dir) => ({ repository: item.repository, branch, commit, workspace: dir, onlyFetchWorkspace: rule.onlyFetchWorkspace }));
    });
    return { targets: perRepository.flat(), warnings };
  }
}

/** The template context known before any step runs (what the cache key may depend on). */
export function staticContext(spec: BatchSpec, target: Pick<BatchTarget, "repository" | "branch" | "workspace">): TemplateContext {
  return { repository: { name: target.repository, branch: target.branch }, batch: { name: spec.name, description: spec.description }, steps: { path: target.workspace } };
}

/**
 * The execution cache key: a hash of what decides an entry's result. The repository at its
 * commit, the workspace (and how it is fetched), each step after static templating (image,
 * commands, env, dir, condition, outputs, files), and the names of the secrets. Not the step
 * keys, timeouts, resources or the changeset template: they do not change the diff.
 */
export function cacheKey(spec: BatchSpec, target: BatchTarget): string {
  const context = staticContext(spec, target);
  const render = (text: string): string => renderTemplate(text, context, { partial: true });
  const steps = spec.steps.map((step) => ({
    image: step.image ?? null,
    commands: step.commands.map(render),
    env: Object.entries(step.env).sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, value]) => [name, render(value)]),
    dir: step.dir,
    if: step.if === undefined ? null : render(step.if),
    outputs: Object.entries(step.outputs).sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, output]) => [name, output.value === undefined ? null : render(output.value), output.fromFile ?? null, output.format]),
    files: Object.entries(step.files).sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, content]) => [path, render(content)]),
  }));
  const secrets = Object.keys((spec.job.secrets as Record<string, unknown> | undefined) ?? {}).sort();
  const material = JSON.stringify({ v: 1, repository: target.repository, commit: target.commit, workspace: target.workspace, sparse: target.onlyFetchWorkspace, steps, secrets });
  return createHash("sha256").update(material).digest("hex");
}

/** The job spec (input form) for one workspace: the batch's steps under its template context. */
export function jobSpecInput(spec: BatchSpec, target: BatchTarget): Record<string, unknown> {
  const inWorkspace = (dir: string): string => (target.workspace === "." ? dir : posix.normalize(posix.join(target.workspace, dir)));
  return {
    ...spec.job,
    repository: target.repository,
    commit: target.commit,
    shallowClone: true,
    ...(target.onlyFetchWorkspace && target.workspace !== "." ? { sparseCheckout: [`/${target.workspace}/`] } : {}),
    steps: spec.steps.map((step) => ({
      key: step.key,
      ...(step.image !== undefined ? { image: step.image } : {}),
      commands: step.commands,
      dir: inWorkspace(step.dir),
      env: step.env,
      ...(step.timeoutMs !== undefined ? { timeout: `${step.timeoutMs}ms` } : {}),
      ...(step.if !== undefined ? { if: step.if } : {}),
      ...(Object.keys(step.outputs).length > 0 ? { outputs: step.outputs } : {}),
      ...(Object.keys(step.files).length > 0 ? { files: step.files } : {}),
    })),
    outputs: { diff: true, paths: [], ...(target.workspace !== "." ? { diffPaths: [target.workspace] } : {}) },
    template: { repository: { name: target.repository, branch: target.branch }, batch: { name: spec.name, description: spec.description }, path: target.workspace },
  };
}

/** The parsed job spec for one workspace; a problem in it is the batch spec's (named by field). */
export function jobSpecFor(spec: BatchSpec, target: BatchTarget, text: string): JobSpec {
  const parsed = JobSpecInput.safeParse(jobSpecInput(spec, target));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw batchSpecError(text, issue.path, `${issue.message} (in the job for ${target.repository}${target.workspace === "." ? "" : ` ${target.workspace}`})`);
  }
  return parsed.data;
}
