/**
 * Following a job live over the events stream: log text as it arrives, a header whenever the
 * entry changes, and the job's final state. Reconnects (resuming at the offsets it has) when the
 * stream breaks, e.g. while a coordinator restarts.
 */
import { coerceError, isTerminal, LogEvent, type JobState } from "../protocol/index.ts";
import type { ApiClient } from "./api-client.ts";
import { InertText } from "./inert.ts";

export interface FollowOptions {
  /** Where log text goes. */
  out: NodeJS.WritableStream;
  /** Where headers and notices go (default: out). */
  notices?: NodeJS.WritableStream;
  signal?: AbortSignal;
  /** Print log text as stored, escape sequences and all (default: inert, see inert.ts). */
  raw?: boolean;
  /** Called for each log event (benchmarks use this to time delivery). */
  onLog?: (event: LogEvent) => void;
}

export async function followJob(client: ApiClient, id: number, options: FollowOptions): Promise<JobState> {
  const notices = options.notices ?? options.out;
  const offsets = new Map<string, number>();
  let currentKey: string | undefined;
  let state: JobState = "queued";
  let failures = 0;
  let converter = options.raw ? undefined : new InertText();
  const write = (text: string): void => {
    options.out.write(converter ? converter.push(Buffer.from(text)) : text);
  };
  /** Ends the current entry's text (a held-back partial sequence is shown as it is). */
  const endEntry = (): void => {
    if (!converter) return;
    const rest = converter.end();
    if (rest.length > 0) options.out.write(rest);
    converter = new InertText();
  };
  for (;;) {
    const from = [...offsets].map(([key, offset]) => `${key}:${offset}`).join(",");
    try {
      for await (const event of client.events(id, { ...(from ? { from } : {}), ...(options.signal ? { signal: options.signal } : {}) })) {
        failures = 0;
        if (event.event === "log") {
          const log = LogEvent.parse(JSON.parse(event.data));
          if (log.key !== currentKey) {
            endEntry();
            currentKey = log.key;
            notices.write(`\n── ${log.key} ──\n`);
          }
          options.onLog?.(log);
          write(log.text);
          offsets.set(log.key, log.end);
        } else if (event.event === "job") {
          state = (JSON.parse(event.data) as { state: JobState }).state;
        } else if (event.event === "attempt") {
          endEntry();
          offsets.clear();
          currentKey = undefined;
          notices.write(`\n── attempt ${(JSON.parse(event.data) as { attempt: number }).attempt} ──\n`);
        } else if (event.event === "end") {
          endEntry();
          return (JSON.parse(event.data) as { state: JobState }).state;
        }
      }
      if (isTerminal(state)) {
        endEntry();
        return state;
      }
    } catch (error) {
      if (options.signal?.aborted) return state;
      failures += 1;
      if (failures > 60) throw error;
      notices.write(`\n[stream interrupted: ${coerceError(error).message}; reconnecting]\n`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
