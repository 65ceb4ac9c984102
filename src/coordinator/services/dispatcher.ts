/**
 * Long-poll dispatch: an idle executor's dequeue is held open and answered the moment a job it
 * can take is queued, so pickup latency is not set by any poll interval.
 *
 * States of one dequeue: CLAIMING -> (job) DONE | (none) WAITING -> (wake | timeout | abort)
 * -> CLAIMING | DONE. A waiter registers for wake-ups *before* it tries to claim, so a job queued
 * between a failed claim and the wait is never missed: the wake sets `woken` and the wait returns
 * at once. Every waiter whose queues match is woken; the store's claim decides who wins.
 */
import type { Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/logger.ts";
import { sha256Hex, newToken } from "../../common/tokens.ts";
import type { DequeueRequest } from "../../protocol/index.ts";
import type { JobRecord, Store } from "../../store/index.ts";

interface Waiter {
  queues: ReadonlySet<string>;
  woken: boolean;
  wake: () => void;
}

export interface Claimed {
  job: JobRecord;
  token: string;
}

export class Dispatcher {
  private readonly waiters = new Set<Waiter>();
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly leaseMs: number;
  private readonly unsubscribe: () => void;

  constructor(options: { store: Store; clock: Clock; leaseMs: number; logger: Logger }) {
    this.store = options.store;
    this.clock = options.clock;
    this.leaseMs = options.leaseMs;
    this.unsubscribe = this.store.onChange((change) => {
      if (change.kind === "queued") this.wake(change.queue);
    });
  }

  get waiting(): number {
    return this.waiters.size;
  }

  /** Claims a job for the executor, waiting up to `waitMs` for one to be queued. */
  async dequeue(request: DequeueRequest, waitMs: number, signal: AbortSignal): Promise<Claimed | undefined> {
    const waiter: Waiter = { queues: new Set(request.queues), woken: false, wake: () => undefined };
    this.waiters.add(waiter);
    const deadline = this.clock.now() + waitMs;
    try {
      for (;;) {
        waiter.woken = false;
        const token = newToken("ajt");
        const job = await this.store.jobs.claim({ executor: request, tokenHash: sha256Hex(token), leaseMs: this.leaseMs }, this.clock.now());
        if (job) return { job, token };
        const remaining = deadline - this.clock.now();
        if (remaining <= 0 || signal.aborted) return undefined;
        if (!waiter.woken) await this.waitForWake(waiter, remaining, signal);
        if (signal.aborted) return undefined;
        if (!waiter.woken && this.clock.now() >= deadline) return undefined;
      }
    } finally {
      this.waiters.delete(waiter);
    }
  }

  private waitForWake(waiter: Waiter, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      waiter.wake = done;
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        waiter.wake = () => undefined;
        resolve();
      }
    });
  }

  private wake(queue: string): void {
    for (const waiter of this.waiters) {
      if (!waiter.queues.has(queue)) continue;
      waiter.woken = true;
      waiter.wake();
    }
  }

  close(): void {
    this.unsubscribe();
    for (const waiter of this.waiters) waiter.wake();
  }
}
