/**
 * One log entry's text as lines, appended as it streams in. Each complete line keeps the ANSI
 * style in force at its start (shared objects, see ansi.ts), so any line can be drawn on its
 * own: the view renders only the lines on screen, however long the log.
 *
 * Bounds: a line longer than MAX_LINE is shown as several; beyond maxChars or maxLines the oldest
 * lines leave the buffer and `dropped` counts them, so the view can say so (the full log stays
 * downloadable from the coordinator).
 */
import { PLAIN, styleAfter, type Style } from "./ansi.ts";

export const MAX_LINE = 64 * 1024;

export interface BufferLimits {
  maxChars: number;
  maxLines: number;
}

export const DEFAULT_LIMITS: BufferLimits = { maxChars: 64 * 1024 * 1024, maxLines: 1_000_000 };

export class LogBuffer {
  private lines: string[] = [];
  private starts: Style[] = [];
  /** Text after the last newline, and the style at its start. */
  private partial = "";
  private style: Style = PLAIN;
  private chars = 0;
  private readonly limits: BufferLimits;
  /** Lines removed from the head to stay within the limits. */
  dropped = 0;
  /** Bumped by every change, for views to notice. */
  version = 0;

  constructor(limits: BufferLimits = DEFAULT_LIMITS) {
    this.limits = limits;
  }

  /** Lines to show, counting an unfinished last line. */
  get length(): number {
    return this.lines.length + (this.partial ? 1 : 0);
  }

  append(text: string): void {
    if (!text) return;
    this.version += 1;
    let from = 0;
    let newline = text.indexOf("\n");
    if (newline >= 0) {
      this.push(this.partial + text.slice(0, newline));
      this.partial = "";
      from = newline + 1;
      newline = text.indexOf("\n", from);
      while (newline >= 0) {
        this.push(text.slice(from, newline));
        from = newline + 1;
        newline = text.indexOf("\n", from);
      }
    }
    this.partial += text.slice(from);
    while (this.partial.length > MAX_LINE) {
      this.push(this.partial.slice(0, MAX_LINE));
      this.partial = this.partial.slice(MAX_LINE);
    }
    this.trim();
  }

  /** Line `index` (0-based among the lines held) and the style it starts with. */
  line(index: number): { text: string; start: Style } {
    if (index < this.lines.length) return { text: this.lines[index] ?? "", start: this.starts[index] ?? PLAIN };
    return { text: this.partial, start: this.style };
  }

  /** The number users see beside line `index`: lines dropped from the head still count. */
  lineNumber(index: number): number {
    return this.dropped + index + 1;
  }

  clear(): void {
    this.lines = [];
    this.starts = [];
    this.partial = "";
    this.style = PLAIN;
    this.chars = 0;
    this.dropped = 0;
    this.version += 1;
  }

  private push(raw: string): void {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    this.lines.push(line);
    this.starts.push(this.style);
    this.style = styleAfter(line, this.style);
    this.chars += line.length + 1;
  }

  private trim(): void {
    if (this.chars <= this.limits.maxChars && this.lines.length <= this.limits.maxLines) return;
    // Drop a tenth at a time, so trimming a huge buffer stays rare.
    let count = Math.max(Math.ceil(this.lines.length / 10), this.lines.length - this.limits.maxLines);
    let removedChars = 0;
    for (let index = 0; index < count; index += 1) removedChars += (this.lines[index]?.length ?? 0) + 1;
    while (this.chars - removedChars > this.limits.maxChars && count < this.lines.length) {
      removedChars += (this.lines[count]?.length ?? 0) + 1;
      count += 1;
    }
    this.lines.splice(0, count);
    this.starts.splice(0, count);
    this.chars -= removedChars;
    this.dropped += count;
  }
}
