/**
 * The live view of a local batch run. On a terminal: a table redrawn in place (one row per
 * repository/workspace: state, current step, time, files, +/-, the last line of output), at most
 * every 100 ms, cut to the terminal's height (running and failed rows first). Elsewhere (a pipe,
 * a CI log): plain lines, one per event, and every log line prefixed with its repository.
 *
 * Everything happens on the event loop; `close()` draws the last frame and stops the timer.
 */
import { formatDuration } from "../../protocol/index.ts";
import type { DiffStat } from "./diff-stat.ts";
import type { TaskState } from "./runner.ts";

export interface ProgressRow {
  id: number;
  repository: string;
  /** Workspace path in a monorepo ("." for the whole repository). */
  workspace: string;
  state: TaskState;
  step: string | undefined;
  startedAt: number | undefined;
  finishedAt: number | undefined;
  stat: DiffStat | undefined;
  lastLine: string;
  message: string | undefined;
}

export interface ProgressOptions {
  tty: boolean;
  title: string;
  /** Terminal size, read at each frame (it may change). */
  columns?: () => number;
  rows?: () => number;
  now?: () => number;
}

const FRAME_MS = 100;

/** Printable text only: escape sequences and control characters out, tabs as spaces. */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g, "").replace(/\t/g, "  ").replace(/[\x00-\x1f\x7f]/g, "");
}

export function rowLabel(row: Pick<ProgressRow, "repository" | "workspace">): string {
  return row.workspace === "." || row.workspace === "" ? row.repository : `${row.repository}:${row.workspace}`;
}

function statText(stat: DiffStat | undefined): [string, string] {
  if (!stat) return ["", ""];
  return [String(stat.files), `+${stat.added} -${stat.deleted}`];
}

export class ProgressView {
  private readonly out: NodeJS.WritableStream;
  private readonly options: ProgressOptions;
  private readonly rows = new Map<number, ProgressRow>();
  private readonly partial = new Map<number, string>();
  private drawnLines = 0;
  private timer: NodeJS.Timeout | undefined;
  private dirty = false;
  private closed = false;

  constructor(out: NodeJS.WritableStream, options: ProgressOptions) {
    this.out = out;
    this.options = options;
    if (options.tty) {
      this.timer = setInterval(() => this.draw(), FRAME_MS);
      this.timer.unref();
    } else {
      this.out.write(`${options.title}\n`);
    }
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  add(row: Pick<ProgressRow, "id" | "repository" | "workspace">): void {
    this.rows.set(row.id, { ...row, state: "queued", step: undefined, startedAt: undefined, finishedAt: undefined, stat: undefined, lastLine: "", message: undefined });
    this.dirty = true;
  }

  get(id: number): ProgressRow | undefined {
    return this.rows.get(id);
  }

  setState(id: number, state: TaskState, extra: { stat?: DiffStat | undefined; message?: string | undefined } = {}): void {
    const row = this.rows.get(id);
    if (!row) return;
    row.state = state;
    if (state === "running") row.startedAt = this.now();
    if (state !== "running" && state !== "queued") {
      row.finishedAt = this.now();
      this.flushPartial(row);
      row.step = undefined;
    }
    row.stat = extra.stat ?? row.stat;
    row.message = extra.message ?? row.message;
    this.dirty = true;
    if (this.options.tty) return;
    const done = [...this.rows.values()].filter((candidate) => candidate.finishedAt !== undefined).length;
    if (state === "running") this.out.write(`${rowLabel(row)}: started\n`);
    else if (state !== "queued") {
      const took = row.startedAt !== undefined && row.finishedAt !== undefined ? ` in ${formatDuration(row.finishedAt - row.startedAt)}` : "";
      const [files, lines] = statText(row.stat);
      const what = state === "completed" ? (row.stat && row.stat.files > 0 ? `${files} ${row.stat.files === 1 ? "file" : "files"} changed, ${lines}` : "no changes") : (row.message ?? "");
      this.out.write(`[${done}/${this.rows.size}] ${rowLabel(row)}: ${state}${took}${what ? `: ${what}` : ""}\n`);
    }
  }

  step(id: number, key: string): void {
    const row = this.rows.get(id);
    if (!row) return;
    this.flushPartial(row);
    row.step = key;
    this.dirty = true;
  }

  log(id: number, data: Buffer): void {
    const row = this.rows.get(id);
    if (!row) return;
    const text = (this.partial.get(id) ?? "") + data.toString("utf8");
    const lines = text.split("\n");
    const rest = lines.pop() ?? "";
    this.partial.set(id, rest);
    const complete = lines.map((line) => line.replace(/\r$/, ""));
    const last = [...complete].reverse().find((line) => printable(line).trim() !== "");
    if (last !== undefined) row.lastLine = printable(last).trim();
    else if (printable(rest).trim()) row.lastLine = printable(rest).trim();
    this.dirty = true;
    if (!this.options.tty) for (const line of complete) this.out.write(`${rowLabel(row)}${row.step ? ` [${row.step}]` : ""} | ${line}\n`);
  }

  private flushPartial(row: ProgressRow): void {
    const rest = this.partial.get(row.id);
    if (!rest) return;
    this.partial.delete(row.id);
    if (!this.options.tty) this.out.write(`${rowLabel(row)}${row.step ? ` [${row.step}]` : ""} | ${rest}\n`);
  }

  /** The frame's lines, fitted to `height` lines and `width` columns. */
  frame(width: number, height: number): string[] {
    const now = this.now();
    const all = [...this.rows.values()];
    const counts = new Map<TaskState, number>();
    for (const row of all) counts.set(row.state, (counts.get(row.state) ?? 0) + 1);
    const order: Record<TaskState, number> = { running: 0, failed: 1, errored: 1, canceled: 2, completed: 3, queued: 4 };
    const room = Math.max(1, height - 3);
    const shown = all.length <= room ? all : [...all].sort((a, b) => order[a.state] - order[b.state] || a.id - b.id).slice(0, room).sort((a, b) => a.id - b.id);
    const header = ["REPOSITORY", "STATE", "STEP", "TIME", "FILES", "+/-", "OUTPUT"];
    const table: string[][] = [header];
    for (const row of shown) {
      const time = row.startedAt === undefined ? "" : formatDuration((row.finishedAt ?? now) - row.startedAt);
      const [files, lines] = statText(row.stat);
      const output = row.state === "running" ? row.lastLine : row.state === "completed" ? "" : (row.message ?? "");
      table.push([rowLabel(row), row.state, row.step ?? "", time, files, lines, output]);
    }
    const widths = header.map((_, column) => Math.max(...table.map((cells) => (cells[column] ?? "").length)));
    const lines = [this.options.title];
    for (const cells of table) lines.push(cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join("  ").trimEnd());
    const summary = (["completed", "failed", "errored", "canceled", "running", "queued"] as const)
      .filter((state) => (counts.get(state) ?? 0) > 0)
      .map((state) => `${counts.get(state)} ${state}`)
      .join(", ");
    lines.push(`${summary}${shown.length < all.length ? ` (${all.length - shown.length} rows not shown)` : ""}`);
    return lines.map((line) => (line.length > width - 1 ? `${line.slice(0, Math.max(0, width - 2))}…` : line));
  }

  private draw(): void {
    if (!this.dirty && !this.rows.size) return;
    const running = [...this.rows.values()].some((row) => row.state === "running");
    if (!this.dirty && !running) return;
    this.dirty = false;
    const lines = this.frame(this.options.columns?.() ?? 100, this.options.rows?.() ?? 40);
    const up = this.drawnLines > 0 ? `\x1b[${this.drawnLines}F` : "";
    this.out.write(`${up}\x1b[J${lines.join("\n")}\n`);
    this.drawnLines = lines.length;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.options.tty) {
      this.dirty = true;
      this.draw();
    } else {
      for (const row of this.rows.values()) this.flushPartial(row);
    }
  }
}
