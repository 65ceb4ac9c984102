/**
 * Long-poll dispatch: an idle executor's dequeue is held open and answered the moment a job it
 * can take is queued, so pickup latency is not set by any poll interval.
 *
 * States of one dequeue: CLAIMING -> (job) DONE | (none) WAITING -> (wake | timeout | abort)
 * -> CLAIMING | DONE. A waiter registers *before* it first claims, so a job queued between a
 * failed claim and the wait is never missed: the wake is kept on the waiter and the next claim
 * runs at once.
 *
 * One wake per queued job: a queued change wakes one waiter that could take that job (its queues
 * isolation and network match), preferring one that is asleep, longest-waiting first; a thundering herd of
 * claims for one job is avoided. A wake is *consumed* by the claim that starts after it; a waiter
 * that leaves holding an unconsumed wake (it got another job, timed out, was aborted, or its claim
 * failed) passes it to another matching waiter. A wake finding every matching waiter already
 * woken is dropped: each of those will claim again, and a new dequeue always claims first.
 *
 * Fairness: each claim tries the executor's queues in a weighted random order (the first queue
 * with a job wins), so among the queues that hold a job, queue q is served with probability
 * weight(q) / sum of their weights, whatever their backlogs; one busy queue cannot starve another.
 */
import type { Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/logger.ts";
import { sha256Hex, newToken } from "../../common/tokens.ts";
import { isolationRank, networkRank, type DequeueRequest, type Isolation, type NetworkMode } from "../../protocol/index.ts";
import type { JobRecord, Store } from "../../store/index.ts";

interface Wake {
  queue: string;
  isolation: Isolation;
  /** Unknown (an announcement without it): any waiter may take the wake. */
  network: NetworkMode | undefined;
}

interface Waiter {
  queues: ReadonlySet<string>;
  maxRank: number;
  maxNetworkRank: number;
  asleep: boolean;
  /** A wake not yet consumed by a claim. */
  wake: Wake | undefined;
  /** Ends the current sleep. */
  rouse: () => void;
}

export interface Claimed {
  job: JobRecord;
  token: string;
  /** sha256 of `token`, as the store keeps it. */
  tokenHash: string;
}

/**
 * The queues in a weighted random order (Efraimidis-Spirakis: sort by u^(1/w)); the chance that a
 * queue comes first among any subset is its weight over the subset's total.
 */
export function weightedOrder(queues: readonly string[], weights: Readonly<Record<string, number>>, random: () => number = Math.random): string[] {
  if (queues.length <= 1) return [...queues];
  return queues
    .map((queue) => ({ queue, key: Math.pow(random(), 1 / (weights[queue] ?? 1)) }))
    .sort((a, b) => b.key - a.key)
    .map((entry) => entry.queue);
}

export class Dispatcher {
  private readonly waiters = new Set<Waiter>();
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly leaseMs: number;
  private readonly weights: Readonly<Record<string, number>>;
  private readonly unsubscribe: () => void;

  constructor(options: { store: Store; clock: Clock; leaseMs: number; logger: Logger; queueWeights?: Readonly<Record<string, number>> }) {
    this.store = options.store;
    this.clock = options.clock;
    this.leaseMs = options.leaseMs;
    this.weights = options.queueWeights ?? {};
    this.unsubscribe = this.store.onChange((change) => {
      if (change.kind === "queued") this.wakeOne({ queue: change.queue, isolation: change.isolation, network: change.network }, undefined);
    });
  }

  get waiting(): number {
    return this.waiters.size;
  }

  /** Claims a job for the executor, waiting up to `waitMs` for one to be queued. */
  async dequeue(request: DequeueRequest, waitMs: number, signal: AbortSignal): Promise<Claimed | undefined> {
    const waiter: Waiter = {
      queues: new Set(request.queues),
      maxRank: Math.max(...request.isolation.map(isolationRank)),
      maxNetworkRank: networkRank(request.network),
      asleep: false,
      wake: undefined,
      rouse: () => undefined,
    };
    this.waiters.add(waiter);
    const deadline = this.clock.now() + waitMs;
    try {
      for (;;) {
        const consumed = waiter.wake;
        waiter.wake = undefined;
        const token = newToken("ajt");
        const tokenHash = sha256Hex(token);
        let job: JobRecord | undefined;
        try {
          job = await this.store.jobs.claim(
            { executor: request, tokenHash, leaseMs: this.leaseMs, preference: weightedOrder(request.queues, this.weights) },
            this.clock.now(),
          );
        } catch (error) {
          waiter.wake ??= consumed;
          throw error;
        }
        if (job) return { job, token, tokenHash };
        if (waiter.wake) continue;
        const remaining = deadline - this.clock.now();
        if (remaining <= 0 || signal.aborted) return undefined;
        await this.sleep(waiter, remaining, signal);
        if (signal.aborted) return undefined;
        if (!waiter.wake && this.clock.now() >= deadline) return undefined;
      }
    } finally {
      this.waiters.delete(waiter);
      if (waiter.wake) this.wakeOne(waiter.wake, waiter);
    }
  }

  private sleep(waiter: Waiter, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
      waiter.asleep = true;
      waiter.rouse = done;
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        waiter.asleep = false;
        waiter.rouse = () => undefined;
        resolve();
      }
    });
  }

  /** Hands a wake to one waiter that could take the job: asleep first, longest-waiting first. */
  private wakeOne(wake: Wake, except: Waiter | undefined): void {
    const rank = isolationRank(wake.isolation);
    const network = wake.network === undefined ? 0 : networkRank(wake.network);
    let busy: Waiter | undefined;
    for (const waiter of this.waiters) {
      if (waiter === except || waiter.wake || !waiter.queues.has(wake.queue) || waiter.maxRank < rank || waiter.maxNetworkRank < network) continue;
      if (waiter.asleep) {
        waiter.wake = wake;
        waiter.rouse();
        return;
      }
      busy ??= waiter;
    }
    if (busy) busy.wake = wake;
  }

  close(): void {
    this.unsubscribe();
    for (const waiter of this.waiters) waiter.rouse();
  }
}
