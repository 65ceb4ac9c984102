/**
 * What a local run's results become: upload entries (the same diff, log and outputs an executor's
 * job would have stored), or files under `--out` with `--no-upload`, and the closing table.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BATCH_OUTPUTS_ARTIFACT, BatchOutputs, type BatchUploadEntry, type ResolvedWorkspace } from "../../protocol/batch.ts";
import { RESERVED_ENTRY_KEYS } from "../../protocol/index.ts";
import { table } from "../context.ts";
import { diffStat, type DiffStat } from "./diff-stat.ts";
import { rowLabel } from "./progress.ts";
import type { TaskResult } from "./runner.ts";

export interface LocalOutcome {
  target: ResolvedWorkspace;
  result: TaskResult;
}

/** The job's log entries in order, each under a "── key (state) ──" header (as `batch logs` prints a job's). */
export function logText(result: TaskResult): string {
  const job = result.job;
  if (!job) return result.message ? `[airlock] ${result.message}\n` : "";
  let out = "";
  for (const [key, entry] of job.entries) {
    const text = job.log(key).toString("utf8");
    out += `── ${key} (${entry.state}) ──\n${text}${text && !text.endsWith("\n") ? "\n" : ""}`;
  }
  return out;
}

/** The steps' outputs by name, as the executor recorded them (the batch outputs artifact), if any. */
export function outputsOf(result: TaskResult): Record<string, unknown> {
  const bytes = result.job?.artifacts.get(BATCH_OUTPUTS_ARTIFACT);
  if (!bytes) return {};
  const parsed = BatchOutputs.safeParse(JSON.parse(bytes.toString("utf8")));
  return parsed.success ? parsed.data.outputs : {};
}

function failureOf(result: TaskResult): string {
  if (result.state === "errored") return `errored on this machine: ${result.message ?? "the sandbox or workspace broke"}`;
  if (result.state === "canceled") return "canceled";
  return result.message ?? `ended ${result.state}`;
}

export function uploadEntry({ target, result }: LocalOutcome): BatchUploadEntry {
  const completed = result.state === "completed";
  return {
    repository: target.repository,
    workspace: target.workspace,
    commit: target.commit,
    branch: target.branch,
    state: completed ? "completed" : "failed",
    diff: completed ? result.diff.toString("utf8") : "",
    log: logText(result),
    ...(completed ? {} : { failureMessage: failureOf(result).slice(0, 16_000) }),
    outputs: outputsOf(result),
  };
}

/** Where `--no-upload` puts one entry's files: <out>/<repository>[/<workspace>].{diff,log}. */
export function outPath(outDir: string, target: Pick<ResolvedWorkspace, "repository" | "workspace">, extension: string): string {
  const base = target.workspace === "." || target.workspace === "" ? target.repository : `${target.repository}/${target.workspace}`;
  return join(outDir, `${base}.${extension}`);
}

/**
 * Writes each completed entry's diff (when it changed something), every entry's log, and
 * results.json listing them all. Returns the paths of the diffs written.
 */
export async function writeResults(outDir: string, outcomes: readonly LocalOutcome[], meta: { batch: string; runtime: string }): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const written: string[] = [];
  const summary = [];
  for (const { target, result } of outcomes) {
    const stat = result.state === "completed" ? diffStat(result.diff) : undefined;
    const diffFile = outPath(outDir, target, "diff");
    const logFile = outPath(outDir, target, "log");
    await mkdir(dirname(diffFile), { recursive: true });
    if (result.state === "completed" && result.diff.length > 0) {
      await writeFile(diffFile, result.diff);
      written.push(diffFile);
    }
    await writeFile(logFile, logText(result));
    summary.push({
      repository: target.repository,
      workspace: target.workspace,
      branch: target.branch,
      commit: target.commit,
      state: result.state,
      ...(result.state === "completed" ? {} : { failureMessage: failureOf(result) }),
      diffStat: stat ?? null,
      diff: result.state === "completed" && result.diff.length > 0 ? diffFile.slice(outDir.length + 1) : null,
      log: logFile.slice(outDir.length + 1),
      outputs: outputsOf(result),
      durationMs: result.finishedAt - result.startedAt,
    });
  }
  await writeFile(join(outDir, "results.json"), `${JSON.stringify({ batch: meta.batch, runtime: meta.runtime, entries: summary }, null, 2)}\n`);
  return written;
}

export function summaryTable(outcomes: readonly LocalOutcome[]): string {
  const rows = [["REPOSITORY", "STATE", "FILES", "+/-", "TIME", "MESSAGE"]];
  for (const { target, result } of outcomes) {
    const stat: DiffStat | undefined = result.state === "completed" ? diffStat(result.diff) : undefined;
    rows.push([
      rowLabel(target),
      result.state,
      stat ? String(stat.files) : "-",
      stat ? `+${stat.added} -${stat.deleted}` : "-",
      `${((result.finishedAt - result.startedAt) / 1000).toFixed(1)}s`,
      result.state === "completed" ? "" : failureOf(result).split("\n")[0]?.slice(0, 120) ?? "",
    ]);
  }
  return table(rows)
    .split("\n")
    .map((line) => line.trimEnd())
    .join("\n");
}

/** True for log entries the executor owns (prepare, finalize), as opposed to the spec's steps. */
export function isExecutorEntry(key: string): boolean {
  return (RESERVED_ENTRY_KEYS as readonly string[]).includes(key);
}
