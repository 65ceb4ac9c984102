/**
 * Batches: one batch spec run over many repositories, one job per repository (or per workspace
 * of a monorepo), each diff reviewed, the accepted ones applied as a commit on a branch pushed to
 * the repository's origin. This file holds the batch spec (YAML, parsed keeping line numbers, so
 * errors name the field and the line); the wire types of the batch API are in batch-api.ts, re-exported here.
 *
 * Routes (user API, Bearer API token; NAME is the batch name, an Identifier):
 *   POST /api/batches                      PreviewRequest -> 201 BatchView
 *        a new version of the batch named in the spec, one job per workspace (or a cached
 *        result); nothing is stored when the spec, its repositories or its templates are wrong
 *   POST /api/batches/resolve              PreviewRequest -> ResolvedBatch
 *        what a preview would run, without storing anything (the local mode runs these jobs)
 *   POST /api/batches/upload               BatchUpload -> 201 BatchView
 *        results computed elsewhere (`airlock batch run --local`), stored as a new version
 *   GET  /api/batches                      -> { batches: BatchSummary[] }
 *   GET  /api/batches/:name[?version=N]    -> BatchView (the latest version unless N)
 *   GET  /api/batches/:name/diff[?repository=R&workspace=W&version=N]  -> text/x-diff
 *        the combined diff of the version's entries (or of one repository / workspace)
 *   GET  /api/batches/:name/logs?repository=R[&workspace=W&version=N]  -> text/plain
 *        the logs of that entry's job (each log entry under a "── key ──" header)
 *   POST /api/batches/:name/retry          RetryRequest -> BatchView (new jobs, same version)
 *   POST /api/batches/:name/cancel         -> BatchView (cancels the version's unfinished jobs)
 *   POST /api/batches/:name/apply          ApplyRequest -> ApplyResponse
 * Git, read-only, for the local mode: the executors' endpoint /.executors/git/<repository> also
 * takes the API token (see src/coordinator/routes/git.ts).
 */
import { LineCounter, parseDocument, isMap, isPair, isScalar, isSeq, type Node as YamlNode } from "yaml";
import { z } from "zod";
import type { BatchSpec, BatchStep, ChangesetTemplate, OnEntry } from "./batch-api.ts";
import { checkTemplate, hasGlob, stepScope, TemplateError, type TemplateScope } from "./batch-template.ts";
import { ValidationError } from "./errors.ts";
import { EnvName, Identifier, JobSpecInput, RepositoryName } from "./job-spec.ts";
import { WorkspaceFilePath, WorkspacePath } from "./paths.ts";
import { DurationMs } from "./units.ts";

export * from "./batch-api.ts";
export { BATCH_OUTPUTS_ARTIFACT } from "./batch-template.ts";

// ---------------------------------------------------------------------------------------------
// The batch spec as users write it
// ---------------------------------------------------------------------------------------------

/** A repository name, or a glob over names ("acme/*": one segment; "acme/**": any depth). */
export const RepositoryPattern = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9*?][A-Za-z0-9._*?/-]*$/, "must be a repository name or a glob (letters, digits, '.', '_', '-', '/', '*', '?')");

export const OnEntryInput = z.union([
  RepositoryPattern,
  z.strictObject({ repository: RepositoryPattern, branch: z.string().min(1).max(256).optional() }),
  z.strictObject({
    repositoriesMatching: z.strictObject({
      /** Repositories whose tree at HEAD has this path. */
      path: WorkspaceFilePath,
      /** Only among repositories matching this glob (default: all). */
      in: RepositoryPattern.optional(),
    }),
  }),
]);


export const OutputSpec = z
  .strictObject({
    /** A template, usually "${{ step.stdout }}". */
    value: z.string().optional(),
    /** A file of the workspace (relative to the step's dir) whose content is the value. */
    fromFile: WorkspaceFilePath.optional(),
    /** `json` parses the value, so `outputs.NAME.field` works. */
    format: z.enum(["text", "json"]).default("text"),
  })
  .refine((output) => (output.value === undefined) !== (output.fromFile === undefined), { message: "give exactly one of value or fromFile" });
export type OutputSpec = z.infer<typeof OutputSpec>;

const OutputName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]*$/, "must be letters, digits, '_' or '-', starting with a letter or '_'");

export const BatchStepInput = z
  .strictObject({
    key: Identifier.optional(),
    /** One shell script (templated). */
    run: z.string().min(1).optional(),
    /** Or a command list (templated), as in job specs. */
    commands: z.union([z.string().min(1), z.array(z.string()).min(1)]).optional(),
    image: z.string().min(1).max(512).optional(),
    /** Relative to the workspace directory (the repository root, or the monorepo workspace). */
    dir: WorkspacePath.default("."),
    env: z.record(EnvName, z.string()).default({}),
    timeout: DurationMs.optional(),
    /** Runs the step only when the rendered condition is exactly "true". */
    if: z.union([z.string(), z.boolean()]).optional(),
    outputs: z.record(OutputName, OutputSpec).default({}),
    /** Files written (templated contents) into the step's dir before it runs; they stay in the diff unless removed. */
    files: z.record(z.string(), z.string()).default({}),
  })
  .refine((step) => (step.run === undefined) !== (step.commands === undefined), { message: "give exactly one of run or commands" });

export const ChangesetTemplateInput = z.strictObject({
  title: z.string().min(1).max(500).optional(),
  body: z.string().max(100_000).default(""),
  branch: z.string().min(1).max(255).optional(),
  commit: z
    .strictObject({
      message: z.string().min(1).max(100_000).optional(),
      author: z.strictObject({ name: z.string().min(1).max(200), email: z.string().min(3).max(200) }).optional(),
    })
    .default({}),
});

export const WorkspaceRuleInput = z.strictObject({
  /** One job per directory holding a file of this name (e.g. package.json). */
  rootAtLocationOf: z.string().min(1).max(255).regex(/^[^/\\\0]+$/, "must be a file name, not a path"),
  /** Repositories this rule applies to (a glob; default all). */
  in: RepositoryPattern.default("**"),
  /** Check out only the workspace directory (sparse checkout). */
  onlyFetchWorkspace: z.boolean().default(false),
});

/** What users write. Job-level options pass through to each job's spec, which validates them. */
export const BatchSpecInput = z.strictObject({
  name: Identifier,
  description: z.string().max(10_000).default(""),
  on: z.array(OnEntryInput).min(1, "name at least one repository").max(10_000),
  workspaces: z.array(WorkspaceRuleInput).max(100).default([]),
  steps: z.array(BatchStepInput).min(1, "a batch needs at least one step").max(100),
  changesetTemplate: ChangesetTemplateInput.default({ body: "", commit: {} }),
  queue: z.string().default("batch"),
  isolation: z.unknown().optional(),
  resources: z.unknown().optional(),
  network: z.unknown().optional(),
  timeout: z.unknown().optional(),
  secrets: z.unknown().optional(),
  maxAttempts: z.unknown().optional(),
});
export type BatchSpecInput = z.input<typeof BatchSpecInput>;


export const DEFAULT_CHANGESET_BRANCH = "batch/${{ batch.name }}";
export const DEFAULT_AUTHOR = { name: "Airlock", email: "airlock@localhost" } as const;
const PASSTHROUGH = ["queue", "isolation", "resources", "network", "timeout", "secrets", "maxAttempts"] as const;
/** Isolation levels whose runtimes run every step in an image (the step must name one). */
const IMAGE_REQUIRED = ["container", "gvisor", "vm"];

// ---------------------------------------------------------------------------------------------
// Parsing YAML with line numbers
// ---------------------------------------------------------------------------------------------

/** Where a field is in the spec's text. */
class SourceMap {
  private readonly doc: ReturnType<typeof parseDocument>;
  private readonly lines: LineCounter;

  constructor(doc: ReturnType<typeof parseDocument>, lines: LineCounter) {
    this.doc = doc;
    this.lines = lines;
  }

  /** The 1-based line of the field at `path` (its key when it has one), or of the nearest parent. */
  line(path: readonly PropertyKey[]): number | undefined {
    let node: unknown = this.doc.contents;
    let line = node && (node as YamlNode).range ? this.lines.linePos((node as YamlNode).range![0]).line : undefined;
    for (const part of path) {
      if (isMap(node)) {
        const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && String(item.key.value) === String(part));
        if (!pair) break;
        const key = pair.key as YamlNode;
        if (key.range) line = this.lines.linePos(key.range[0]).line;
        node = pair.value;
      } else if (isSeq(node)) {
        const item = node.items[Number(part)] as YamlNode | undefined;
        if (!item) break;
        if (item.range) line = this.lines.linePos(item.range[0]).line;
        node = item;
      } else break;
    }
    return line;
  }
}

function fieldName(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) out += typeof part === "number" ? `[${part}]` : out ? `.${String(part)}` : String(part);
  return out;
}

/** The first zod issue as a spec error (an unknown key is named, with its own line). */
function issueError(error: z.ZodError, source: SourceMap | undefined): ValidationError {
  const issue = error.issues[0]!;
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0] ?? "";
    return specError([...issue.path, key], `unknown field "${key}"`, source);
  }
  return specError(issue.path, issue.message, source);
}

/** A spec problem: "line 7: steps[1].run: ...", with the dotted field set for the API. */
export function specError(path: readonly PropertyKey[], message: string, source: SourceMap | undefined): ValidationError {
  const line = source?.line(path);
  const field = fieldName(path);
  const text = `${line !== undefined ? `line ${line}: ` : ""}${field ? `${field}: ` : ""}${message}`;
  return new ValidationError(`invalid batch spec: ${text}`, field ? { field: path.map(String).join(".") } : undefined);
}

/**
 * Parses and checks a batch spec (YAML or JSON text): the schema, every template, the job-level
 * options (through the job spec's own schema). Throws a ValidationError naming the field and line.
 */
export function parseBatchSpec(text: string): BatchSpec {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true });
  const source = new SourceMap(doc, lines);
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const line = first.linePos?.[0]?.line;
    throw new ValidationError(`invalid batch spec: ${line !== undefined ? `line ${line}: ` : ""}not valid YAML: ${(first.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "")}`);
  }
  let value: unknown;
  try {
    // toJS expands aliases; a document expanding too many (a "billion laughs") is refused here.
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new ValidationError(`invalid batch spec: not valid YAML: ${(error as Error).message}`);
  }
  return normalizeBatchSpec(value, source);
}

/** Checks an already-parsed spec object (JSON bodies); line numbers are known only from text. */
export function normalizeBatchSpec(value: unknown, source?: SourceMap): BatchSpec {
  const parsed = BatchSpecInput.safeParse(value);
  if (!parsed.success) throw issueError(parsed.error, source);
  const input = parsed.data;

  const job: Record<string, unknown> = {};
  for (const name of PASSTHROUGH) if (input[name] !== undefined) job[name] = input[name];
  const probe = JobSpecInput.safeParse({ ...job, steps: [{ commands: ["true"] }] });
  if (!probe.success) throw issueError(probe.error, source);
  const isolation = probe.data.isolation;

  const steps: BatchStep[] = [];
  const declared: string[] = [];
  const keys = new Set<string>();
  input.steps.forEach((step, index) => {
    const at = (...rest: PropertyKey[]) => ["steps", index, ...rest];
    const check = (template: string, path: PropertyKey[], scope: TemplateScope) => {
      try {
        checkTemplate(template, scope);
      } catch (error) {
        if (error instanceof TemplateError) throw specError(path, `template error in step ${index + 1} at column ${error.column}: ${error.message}`, source);
        throw error;
      }
    };
    const scope = stepScope(index, declared);
    const key = step.key ?? `step-${index + 1}`;
    if (keys.has(key)) throw specError(at("key"), `duplicate step key "${key}"`, source);
    if (key === "prepare" || key === "finalize") throw specError(at("key"), `"${key}" is reserved`, source);
    keys.add(key);
    if (step.image === undefined && IMAGE_REQUIRED.includes(isolation)) {
      throw specError(at(), `step ${index + 1} names no image, but isolation ${isolation} runs every step in an image (set steps[${index}].image)`, source);
    }
    const commands = step.run !== undefined ? [step.run] : typeof step.commands === "string" ? [step.commands] : (step.commands ?? []);
    if (step.run !== undefined) check(step.run, at("run"), scope);
    else commands.forEach((command, n) => check(command, typeof step.commands === "string" ? at("commands") : at("commands", n), scope));
    for (const [name, value] of Object.entries(step.env)) check(value, at("env", name), scope);
    for (const [path, content] of Object.entries(step.files)) {
      const problem = WorkspaceFilePath.safeParse(path);
      if (!problem.success) throw specError(at("files", path), problem.error.issues[0]?.message ?? "bad path", source);
      check(content, at("files", path), scope);
    }
    const condition = typeof step.if === "boolean" ? String(step.if) : step.if;
    if (condition !== undefined) check(condition, at("if"), scope);
    const own = stepScope(index, declared, { own: true });
    for (const [name, output] of Object.entries(step.outputs)) {
      if (output.value !== undefined) check(output.value, at("outputs", name, "value"), own);
    }
    steps.push({
      key,
      ...(step.image !== undefined ? { image: step.image } : {}),
      commands,
      dir: step.dir,
      env: step.env,
      ...(step.timeout !== undefined ? { timeoutMs: step.timeout } : {}),
      ...(condition !== undefined ? { if: condition } : {}),
      outputs: Object.fromEntries(
        Object.entries(step.outputs).map(([name, output]) => [
          name,
          { ...(output.value !== undefined ? { value: output.value } : {}), ...(output.fromFile !== undefined ? { fromFile: output.fromFile } : {}), format: output.format },
        ]),
      ),
      files: step.files,
    });
    declared.push(...Object.keys(step.outputs));
  });

  const template = input.changesetTemplate;
  const changesetTemplate: ChangesetTemplate = {
    title: template.title ?? input.name,
    body: template.body,
    branch: template.branch ?? DEFAULT_CHANGESET_BRANCH,
    commit: { message: template.commit.message ?? template.title ?? input.name, author: template.commit.author ?? { ...DEFAULT_AUTHOR } },
  };
  const changesetScope: TemplateScope = { roots: ["repository", "batch", "steps", "outputs"], outputs: declared };
  const checkChangeset = (text: string, path: PropertyKey[]) => {
    try {
      checkTemplate(text, changesetScope);
    } catch (error) {
      if (error instanceof TemplateError) throw specError(path, `template error at column ${error.column}: ${error.message}`, source);
      throw error;
    }
  };
  checkChangeset(changesetTemplate.title, ["changesetTemplate", "title"]);
  checkChangeset(changesetTemplate.body, ["changesetTemplate", "body"]);
  checkChangeset(changesetTemplate.branch, ["changesetTemplate", "branch"]);
  checkChangeset(changesetTemplate.commit.message, ["changesetTemplate", "commit", "message"]);
  checkChangeset(changesetTemplate.commit.author.name, ["changesetTemplate", "commit", "author", "name"]);
  checkChangeset(changesetTemplate.commit.author.email, ["changesetTemplate", "commit", "author", "email"]);

  const on = input.on.map((entry, index): OnEntry => {
    if (typeof entry === "string") return { repository: entry };
    if ("repository" in entry) return entry.branch !== undefined ? { repository: entry.repository, branch: entry.branch } : { repository: entry.repository };
    void index;
    return entry;
  });
  for (const [index, entry] of on.entries()) {
    if ("repository" in entry && !hasGlob(entry.repository) && !RepositoryName.safeParse(entry.repository).success) {
      throw specError(["on", index], `"${entry.repository}" is not a repository name`, source);
    }
  }
  return {
    name: input.name,
    description: input.description,
    on,
    workspaces: input.workspaces,
    steps,
    changesetTemplate,
    job: { ...job, queue: input.queue },
  };
}

/** Where a problem found after parsing (a repository, a pattern) sits in the spec's text. */
export function batchSpecLine(text: string, path: readonly PropertyKey[]): number | undefined {
  const lines = new LineCounter();
  return new SourceMap(parseDocument(text, { lineCounter: lines }), lines).line(path);
}

export function batchSpecError(text: string, path: readonly PropertyKey[], message: string): ValidationError {
  const lines = new LineCounter();
  return specError(path, message, new SourceMap(parseDocument(text, { lineCounter: lines }), lines));
}
