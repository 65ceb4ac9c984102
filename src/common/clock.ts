/** Time as a dependency, so lease and timeout logic can be tested without sleeping. */
import { setTimeout as delay } from "node:timers/promises";

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: async (ms, signal) => {
    await delay(ms, undefined, signal ? { signal } : undefined);
  },
};

/** A clock that only moves when told to. `sleep` resolves once `advance` passes its deadline. */
export class FakeClock implements Clock {
  private current: number;
  private sleepers: { until: number; resolve: () => void }[] = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const sleeper = { until: this.current + ms, resolve };
      this.sleepers.push(sleeper);
      signal?.addEventListener("abort", () => {
        this.sleepers = this.sleepers.filter((entry) => entry !== sleeper);
        reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      });
    });
  }

  advance(ms: number): void {
    this.current += ms;
    const due = this.sleepers.filter((entry) => entry.until <= this.current);
    this.sleepers = this.sleepers.filter((entry) => entry.until > this.current);
    for (const entry of due) entry.resolve();
  }
}

export function isoOrNull(ms: number | null | undefined): string | null {
  return ms === null || ms === undefined ? null : new Date(ms).toISOString();
}
