/** The server-side `airlock batch` subcommands: preview, list, show, diff, logs, retry, cancel, apply. */
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import type { BatchEntryView, BatchView } from "../../protocol/batch.ts";
import { formatDuration, isTerminal, ValidationError } from "../../protocol/index.ts";
import type { ApiClient } from "../api-client.ts";
import { println, table, type CliIO } from "../context.ts";
import { inert } from "../inert.ts";

const POLL_MS = 500;

async function readSpecText(file: string): Promise<string> {
  if (file === "-") return new Response(Readable.toWeb(process.stdin) as ReadableStream).text();
  return readFile(file, "utf8").catch(() => {
    throw new ValidationError(`cannot read ${file}`);
  });
}

function workspaceLabel(entry: BatchEntryView): string {
  return entry.workspace === "." ? "-" : entry.workspace;
}

/** The per-entry table: repository, workspace, state, cached, files changed, +/-, (apply). */
export function entryRows(view: BatchView, withApply: boolean): string[][] {
  const rows = [["REPOSITORY", "WORKSPACE", "STATE", "CACHED", "FILES", "+", "-", ...(withApply ? ["APPLY"] : [])]];
  for (const entry of view.entries) {
    const stat = entry.diffStat;
    const apply = entry.apply ? `${entry.apply.state}${entry.apply.sha ? ` ${entry.apply.sha.slice(0, 12)}` : ""}${entry.apply.state === "conflict" || entry.apply.state === "failed" ? `: ${entry.apply.message ?? ""}` : ""}` : "-";
    rows.push([
      entry.repository,
      workspaceLabel(entry),
      entry.state,
      entry.cached ? "cached" : "-",
      stat ? String(stat.files) : "-",
      stat ? `+${stat.added}` : "-",
      stat ? `-${stat.deleted}` : "-",
      ...(withApply ? [apply] : []),
    ]);
  }
  return rows;
}

/**
 * The table as it fits the terminal: lines cut at its width (a wrapped line would break the
 * redraw), and when there are more entries than rows, the unfinished and failed ones first and
 * a count of the rest.
 */
function liveTable(view: BatchView, out: NodeJS.WriteStream): string {
  const width = out.columns || 120;
  const room = Math.max(5, (out.rows || 40) - 3);
  let shown = view;
  let hidden = 0;
  if (view.entries.length + 1 > room) {
    const rank = (entry: BatchEntryView): number => (entry.state === "processing" ? 0 : entry.state === "queued" ? 1 : entry.state === "completed" ? 3 : 2);
    const sorted = [...view.entries].sort((a, b) => rank(a) - rank(b));
    shown = { ...view, entries: sorted.slice(0, room - 2) };
    hidden = view.entries.length - shown.entries.length;
  }
  const lines = table(entryRows(shown, false)).split("\n");
  if (hidden > 0) lines.push(`... and ${hidden} more`);
  return lines.map((line) => (line.length > width ? line.slice(0, width - 1) : line)).join("\n");
}

function totals(view: BatchView): string {
  const counts = Object.entries(view.counts)
    .filter(([state]) => !state.startsWith("apply:"))
    .map(([state, count]) => `${count} ${state}`)
    .join(", ");
  return `batch ${view.name} version ${view.version.version}: ${view.entries.length} entries (${counts || "none"})`;
}

function failedCount(view: BatchView): number {
  return view.entries.filter((entry) => entry.state === "failed" || entry.state === "errored" || entry.state === "canceled").length;
}

/**
 * Follows a version until every entry ended: on a terminal the table is redrawn in place, else
 * each entry's changes are printed as lines. Returns the exit code (1 when any entry failed).
 */
export async function watchBatch(client: ApiClient, name: string, version: number, io: CliIO): Promise<number> {
  const tty = Boolean((io.stdout as NodeJS.WriteStream).isTTY);
  const started = Date.now();
  const seen = new Map<number, string>();
  let drawn = 0;
  for (;;) {
    const view = await client.getBatch(name, version);
    const done = view.entries.every((entry) => isTerminal(entry.state));
    if (tty) {
      const text = `${liveTable(view, io.stdout as NodeJS.WriteStream)}\n${totals(view)} ${formatDuration(Date.now() - started)}\n`;
      io.stdout.write(`${drawn > 0 ? `\x1b[${drawn}F\x1b[J` : ""}${text}`);
      drawn = text.split("\n").length - 1;
    } else {
      for (const entry of view.entries) {
        const line = `${entry.state}${entry.cached ? " (cached)" : ""}${entry.diffStat ? ` ${entry.diffStat.files} files +${entry.diffStat.added} -${entry.diffStat.deleted}` : ""}`;
        if (seen.get(entry.id) === line) continue;
        seen.set(entry.id, line);
        println(io.stdout, `${entry.repository}${entry.workspace === "." ? "" : ` ${entry.workspace}`}: ${line}${entry.failureMessage && entry.state !== "completed" ? ` (${entry.failureMessage})` : ""}`);
      }
    }
    if (done) {
      if (!tty) {
        println(io.stdout, `\n${table(entryRows(view, false))}`);
        println(io.stderr, `${totals(view)}; ${formatDuration(Date.now() - started)}`);
      }
      return failedCount(view) > 0 ? 1 : 0;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

export async function previewCommand(client: ApiClient, file: string, options: { detach: boolean }, io: CliIO): Promise<number> {
  const view = await client.previewBatch(await readSpecText(file));
  const cached = view.entries.filter((entry) => entry.cached).length;
  println(io.stderr, `batch ${view.name} version ${view.version.version}: ${view.entries.length - cached} jobs queued, ${cached} cached`);
  for (const warning of view.warnings) println(io.stderr, `warning: ${warning}`);
  if (options.detach) {
    println(io.stdout, table(entryRows(view, false)));
    return 0;
  }
  return watchBatch(client, view.name, view.version.version, io);
}

export async function listCommand(client: ApiClient, io: CliIO): Promise<number> {
  const rows = [["NAME", "VERSION", "ENTRIES", "STATES", "UPDATED"]];
  const now = Date.now();
  for (const batch of await client.listBatches()) {
    const states = Object.entries(batch.counts)
      .map(([state, count]) => `${count} ${state}`)
      .join(", ");
    rows.push([batch.name, String(batch.latestVersion), String(batch.total), states || "-", `${formatDuration(now - Date.parse(batch.updatedAt))} ago`]);
  }
  println(io.stdout, table(rows));
  return 0;
}

export async function showCommand(client: ApiClient, name: string, options: { json: boolean; version: string | undefined }, io: CliIO): Promise<number> {
  const version = options.version === undefined ? undefined : Number(options.version);
  if (version !== undefined && (!Number.isInteger(version) || version <= 0)) throw new ValidationError(`"${options.version}" is not a version number`);
  const view = await client.getBatch(name, version);
  if (options.json) {
    println(io.stdout, JSON.stringify(view, null, 2));
    return 0;
  }
  println(io.stdout, `batch ${view.name}: version ${view.version.version} of ${view.latestVersion} (${view.version.source}, ${view.version.createdAt})${view.running ? ", running" : ""}`);
  if (view.description) println(io.stdout, view.description.trim());
  println(io.stdout, table(entryRows(view, true)));
  println(io.stdout, totals(view));
  return 0;
}

export async function diffCommand(client: ApiClient, name: string, options: { repository: string | undefined; workspace: string | undefined }, io: CliIO): Promise<number> {
  if (options.workspace !== undefined && options.repository === undefined) throw new ValidationError("--workspace needs --repo");
  io.stdout.write(inert(Buffer.from(await client.batchDiff(name, options))));
  return 0;
}

export async function logsCommand(client: ApiClient, name: string, options: { repository: string; workspace: string | undefined }, io: CliIO): Promise<number> {
  io.stdout.write(inert(Buffer.from(await client.batchLogs(name, options))));
  return 0;
}

export async function retryCommand(client: ApiClient, name: string, options: { failed: boolean; detach: boolean }, io: CliIO): Promise<number> {
  const before = new Map((await client.getBatch(name)).entries.map((entry) => [entry.id, entry.jobId]));
  const view = await client.retryBatch(name, { failed: options.failed });
  const queued = view.entries.filter((entry) => entry.jobId !== null && entry.jobId !== before.get(entry.id)).length;
  println(io.stderr, `batch ${view.name} version ${view.version.version}: ${queued} jobs queued again`);
  if (options.detach) return 0;
  return watchBatch(client, view.name, view.version.version, io);
}

export async function cancelCommand(client: ApiClient, name: string, io: CliIO): Promise<number> {
  const view = await client.cancelBatch(name);
  println(io.stdout, `batch ${view.name} version ${view.version.version}: cancel requested for the unfinished jobs`);
  println(io.stdout, totals(view));
  return 0;
}

export async function applyCommand(client: ApiClient, name: string, options: { repositories: string[] | undefined }, io: CliIO): Promise<number> {
  const { results, batch } = await client.applyBatch(name, { repositories: options.repositories });
  if (results.length === 0) {
    println(io.stdout, `batch ${name} version ${batch.version.version}: nothing to apply (no completed entry with a change)`);
    return 0;
  }
  const rows = [["REPOSITORY", "WORKSPACE", "BRANCH", "RESULT", "COMMIT", "MESSAGE"]];
  for (const result of results) {
    rows.push([result.repository, result.workspace === "." ? "-" : result.workspace, result.branch || "-", result.state, result.sha?.slice(0, 12) ?? "-", result.message ?? ""]);
  }
  println(io.stdout, table(rows));
  const counts = new Map<string, number>();
  for (const result of results) counts.set(result.state, (counts.get(result.state) ?? 0) + 1);
  println(io.stderr, `batch ${name} version ${batch.version.version}: ${[...counts].map(([state, count]) => `${count} ${state}`).join(", ")}`);
  return results.some((result) => result.state === "conflict" || result.state === "failed") ? 1 : 0;
}
