/**
 * Templated batch steps (jobs whose spec has a `template` context): before each step the
 * executor evaluates its `if:` and renders its commands, env and files with the results of the
 * steps before it (their stdout and stderr, the files changed so far, their outputs); after it,
 * records what it printed and evaluates its `outputs:`. At the end the outputs are uploaded as
 * the `batch-outputs.json` artifact (redacted), for the changeset template at apply time.
 *
 * The files changed so far come from the executor's private git dir (as the diff does), with a
 * throwaway index: nothing a step planted in workspace/.git runs. They are computed only when a
 * later template uses them.
 *
 * One instance per attempt, used by one JobRun on one event loop: no locking.
 */
import { copyFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { gitEnv, runChecked } from "../common/exec.ts";
import {
  BATCH_OUTPUTS_ARTIFACT,
  conditionHolds,
  normalizeWorkspacePath,
  renderTemplate,
  TemplateError,
  type JobPayload,
  type StepSpec,
  type TemplateContext,
  type TemplateValue,
} from "../protocol/index.ts";
import type { JobClient } from "./client.ts";
import { redacted } from "./outputs.ts";
import { openWorkspaceFile, writeWorkspaceFile, type JobDirs } from "./workspace.ts";

/** Output kept per step for templates (the log gets all of it). */
const MAX_CAPTURE = 1024 * 1024;

/** A step's template could not be rendered, or its outputs evaluated: the step fails with this. */
export class BatchStepError extends Error {}

interface Changes {
  modified: string[];
  added: string[];
  deleted: string[];
}

export class BatchSteps {
  private readonly job: JobPayload;
  private readonly dirs: JobDirs;
  private readonly hostPath: string;
  private readonly context: TemplateContext;
  private stdout: Buffer[] = [];
  private stderr: Buffer[] = [];
  private captured = { stdout: 0, stderr: 0 };
  private changesCounter = 0;

  constructor(job: JobPayload, dirs: JobDirs, options: { hostPath: string }) {
    this.job = job;
    this.dirs = dirs;
    this.hostPath = options.hostPath;
    const template = job.spec.template;
    this.context = {
      repository: template?.repository ?? { name: job.repository?.name ?? "", branch: "" },
      batch: template?.batch ?? { name: "", description: "" },
      steps: { path: template?.path ?? ".", modified_files: [], added_files: [], deleted_files: [] },
      outputs: {},
    };
  }

  /** Whether the step runs (its `if:` renders "true", or it has none). Throws BatchStepError. */
  shouldRun(step: StepSpec): boolean {
    return this.guard(step, "if", () => conditionHolds(step.if, this.context));
  }

  /** The step with its commands and env rendered; its files written into the workspace. */
  async render(step: StepSpec): Promise<StepSpec> {
    this.stdout = [];
    this.stderr = [];
    this.captured = { stdout: 0, stderr: 0 };
    const commands = step.commands.map((command, index) => this.guard(step, step.commands.length > 1 ? `commands[${index}]` : "run", () => renderTemplate(command, this.context)));
    const env = Object.fromEntries(Object.entries(step.env).map(([name, value]) => [name, this.guard(step, `env.${name}`, () => renderTemplate(value, this.context))]));
    for (const [path, content] of Object.entries(step.files ?? {})) {
      const text = this.guard(step, `files.${path}`, () => renderTemplate(content, this.context));
      await writeWorkspaceFile(this.dirs.workspace, normalizeWorkspacePath(`${step.dir}/${path}`), Buffer.from(text, "utf8"), 0o644);
    }
    return { ...step, commands, env };
  }

  /** Keeps what the step prints, for `previous_step.*` and `step.*` (the log gets it all anyway). */
  capture(chunk: Uint8Array, stream: "stdout" | "stderr"): void {
    const room = MAX_CAPTURE - this.captured[stream];
    if (room <= 0) return;
    const part = Buffer.from(chunk.subarray(0, room));
    this.captured[stream] += part.byteLength;
    (stream === "stdout" ? this.stdout : this.stderr).push(part);
  }

  /** After a step that succeeded: its outputs, and what the next step's templates see. */
  async finish(step: StepSpec, exitCode: number | null, laterSteps: readonly StepSpec[]): Promise<void> {
    const stdout = Buffer.concat(this.stdout).toString("utf8");
    const stderr = Buffer.concat(this.stderr).toString("utf8");
    const outputs = this.context.outputs ?? {};
    const own: TemplateContext = { ...this.context, step: { stdout, stderr } };
    for (const [name, output] of Object.entries(step.outputs ?? {})) {
      const field = `outputs.${name}`;
      const text =
        output.value !== undefined
          ? this.guard(step, `${field}.value`, () => renderTemplate(output.value ?? "", own))
          : await this.readOutputFile(step, name, normalizeWorkspacePath(`${step.dir}/${output.fromFile ?? ""}`));
      let value: TemplateValue = text;
      if (output.format === "json") {
        try {
          value = JSON.parse(text) as TemplateValue;
        } catch (error) {
          throw new BatchStepError(`step ${step.key}: output ${name} is not JSON: ${(error as Error).message}`);
        }
      }
      outputs[name] = value;
    }
    this.context.outputs = outputs;
    const needsChanges = laterSteps.some((later) => JSON.stringify([later.commands, later.env, later.files, later.if, later.outputs]).includes("_files"));
    const changes = needsChanges ? await this.changes() : { modified: [], added: [], deleted: [] };
    this.context.previous_step = { stdout, stderr, exit_code: exitCode, modified_files: changes.modified, added_files: changes.added, deleted_files: changes.deleted };
    this.context.steps = { path: this.context.steps?.path ?? ".", modified_files: changes.modified, added_files: changes.added, deleted_files: changes.deleted };
  }

  /** Uploads the outputs (redacted) when any step declared one. */
  async upload(client: JobClient, secrets: string[]): Promise<void> {
    if (!this.job.spec.steps.some((step) => Object.keys(step.outputs ?? {}).length > 0)) return;
    const body = Buffer.from(JSON.stringify({ outputs: this.context.outputs ?? {} }));
    async function* once(): AsyncIterable<Uint8Array> {
      yield body;
    }
    await client.uploadArtifact(BATCH_OUTPUTS_ARTIFACT, redacted(once(), secrets));
  }

  private guard<T>(step: StepSpec, field: string, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      if (error instanceof TemplateError) throw new BatchStepError(`template error in step ${step.key}, ${field}, at column ${error.column}: ${error.message}`);
      throw error;
    }
  }

  private async readOutputFile(step: StepSpec, name: string, path: string): Promise<string> {
    try {
      const file = await openWorkspaceFile(this.dirs.workspace, path);
      const parts: Buffer[] = [];
      let size = 0;
      for await (const chunk of file.stream as AsyncIterable<Buffer>) {
        parts.push(chunk);
        size += chunk.byteLength;
        if (size > MAX_CAPTURE) break;
      }
      (file.stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
      return Buffer.concat(parts).subarray(0, MAX_CAPTURE).toString("utf8");
    } catch (error) {
      throw new BatchStepError(`step ${step.key}: output ${name}: ${(error as Error).message}`);
    }
  }

  /** Files changed so far against the job's commit, repository-relative, as the diff sees them. */
  private async changes(): Promise<Changes> {
    if (!this.job.repository) return { modified: [], added: [], deleted: [] };
    this.changesCounter += 1;
    const index = join(this.dirs.root, `changes-${this.changesCounter}.index`);
    await copyFile(join(this.dirs.gitDir, "index"), index);
    const env = gitEnv({ PATH: this.hostPath }, { GIT_DIR: this.dirs.gitDir, GIT_WORK_TREE: this.dirs.workspace, GIT_INDEX_FILE: index });
    try {
      await runChecked("git", ["add", "--all", "--", "."], { env, cwd: this.dirs.workspace });
      const result = await runChecked("git", ["diff", "--cached", "--name-status", "--no-renames", "-z", this.job.repository.commit], { env, cwd: this.dirs.workspace });
      const fields = result.stdout.toString("utf8").split("\0").filter((field) => field !== "");
      const changes: Changes = { modified: [], added: [], deleted: [] };
      for (let at = 0; at + 1 < fields.length; at += 2) {
        const status = fields[at] ?? "";
        const path = fields[at + 1] ?? "";
        if (status.startsWith("A")) changes.added.push(path);
        else if (status.startsWith("D")) changes.deleted.push(path);
        else changes.modified.push(path);
      }
      return changes;
    } finally {
      await rm(index, { force: true });
    }
  }
}
