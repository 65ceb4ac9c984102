/**
 * Shared by the fault suite: printing each case's figures, a log stream whose every byte the
 * test can predict, reading one attempt's log, and polling.
 */
import { createHash } from "node:crypto";
import type { TestContext } from "node:test";

/** Prints one case's figures as one line of the test output (a diagnostic: `FAULT <case>: k=v, ...`). */
export function printFigures(t: TestContext, name: string, figures: Record<string, string | number>): void {
  const line = `FAULT ${name}: ${Object.entries(figures)
    .map(([key, value]) => `${key}=${value}`)
    .join(", ")}`;
  t.diagnostic(line);
}

/**
 * A step that prints `lines` lines of pseudo-random printable text (a 16-bit LCG, so awk's
 * doubles stay exact), pausing `pauseSeconds` after every `burst` lines, so the output is spread
 * over time. `expectedStream` yields the same bytes.
 */
export function streamCommand(options: { seed: number; lines: number; width: number; burst: number; pauseSeconds: number }): string {
  const { seed, lines, width, burst, pauseSeconds } = options;
  return [
    "awk 'BEGIN {",
    `x = ${seed};`,
    `for (i = 0; i < ${lines}; i++) {`,
    'line = sprintf("%05d ", i);',
    `for (j = 0; j < ${width}; j++) { x = (x * 75 + 74) % 65537; line = line sprintf("%c", 33 + x % 94) }`,
    "print line; fflush();",
    `if (i % ${burst} == ${burst - 1}) system("sleep ${pauseSeconds}")`,
    "} }'",
  ].join(" ");
}

export function expectedStream(options: { seed: number; lines: number; width: number }): string {
  let x = options.seed;
  const out: string[] = [];
  for (let i = 0; i < options.lines; i += 1) {
    let line = `${String(i).padStart(5, "0")} `;
    for (let j = 0; j < options.width; j += 1) {
      x = (x * 75 + 74) % 65537;
      line += String.fromCharCode(33 + (x % 94));
    }
    out.push(`${line}\n`);
  }
  return out.join("");
}

export function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The stored log of one attempt of a job (the API's `?attempt=`), as the API serves it. */
export async function attemptLog(url: string, token: string, jobId: number, key: string, attempt: number): Promise<{ status: number; text: string }> {
  const response = await fetch(`${url}/api/jobs/${jobId}/logs/${encodeURIComponent(key)}?attempt=${attempt}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, text: await response.text() };
}

export async function until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
