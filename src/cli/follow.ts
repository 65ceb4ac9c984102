/**
 * Following a job live over the events stream: log text as it arrives, a header whenever the
 * entry changes, and the job's final state. Reconnects (resuming at the offsets it has) when the
 * stream breaks, e.g. while a coordinator restarts.
 */
import { coerceError, isTerminal, LogEvent, type JobState } from "../protocol/index.ts";
import type { ApiClient } from "./api-client.ts";

export interface FollowOptions {
  /** Where log text goes. */
  out: NodeJS.WritableStream;
  /** Where headers and notices go (default: out). */
  notices?: NodeJS.WritableStream;
  signal?: AbortSignal;
  /** Called for each log event (benchmarks use this to time delivery). */
  onLog?: (event: LogEvent) => void;
}

export async function followJob(client: ApiClient, id: number, options: FollowOptions): Promise<JobState> {
  const notices = options.notices ?? options.out;
  const offsets = new Map<string, number>();
  let currentKey: string | undefined;
  let state: JobState = "queued";
  let failures = 0;
  for (;;) {
    const from = [...offsets].map(([key, offset]) => `${key}:${offset}`).join(",");
    try {
      for await (const event of client.events(id, { ...(from ? { from } : {}), ...(options.signal ? { signal: options.signal } : {}) })) {
        failures = 0;
        if (event.event === "log") {
          const log = LogEvent.parse(JSON.parse(event.data));
          if (log.key !== currentKey) {
            currentKey = log.key;
            notices.write(`\n── ${log.key} ──\n`);
          }
          options.onLog?.(log);
          options.out.write(log.text);
          offsets.set(log.key, log.end);
        } else if (event.event === "job") {
          state = (JSON.parse(event.data) as { state: JobState }).state;
        } else if (event.event === "attempt") {
          offsets.clear();
          currentKey = undefined;
          notices.write(`\n── attempt ${(JSON.parse(event.data) as { attempt: number }).attempt} ──\n`);
        } else if (event.event === "end") {
          return (JSON.parse(event.data) as { state: JobState }).state;
        }
      }
      if (isTerminal(state)) return state;
    } catch (error) {
      if (options.signal?.aborted) return state;
      failures += 1;
      if (failures > 60) throw error;
      notices.write(`\n[stream interrupted: ${coerceError(error).message}; reconnecting]\n`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
