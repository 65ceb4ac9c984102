/**
 * Requeues jobs whose executor stopped heartbeating. Runs every `intervalMs`; safe to run in
 * every coordinator at once, since each reap is one store transaction that only touches rows
 * still processing with a lapsed lease.
 *
 * After a coordinator (re)starts, the first sweep waits one full lease: executors that kept
 * running while it was down get the chance to heartbeat before their leases are judged.
 */
import type { Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/logger.ts";
import type { JobRecord, Store } from "../../store/index.ts";

export class LeaseReaper {
  private timer: NodeJS.Timeout | undefined;
  private readonly notBefore: number;
  private running: Promise<void> | undefined;
  private readonly options: { store: Store; clock: Clock; logger: Logger; intervalMs: number; leaseMs: number; onReaped?: (job: JobRecord) => void };

  constructor(options: { store: Store; clock: Clock; logger: Logger; intervalMs: number; leaseMs: number; onReaped?: (job: JobRecord) => void }) {
    this.options = options;
    this.notBefore = options.clock.now() + options.leaseMs;
  }

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.sweep()
        .then(() => undefined)
        .catch((error: unknown) => this.options.logger.error("lease sweep failed", { error: String(error) }))
        .finally(() => {
          this.running = undefined;
        });
    }, this.options.intervalMs);
    this.timer.unref();
  }

  /** One sweep; returns the jobs it moved. */
  async sweep(): Promise<JobRecord[]> {
    const now = this.options.clock.now();
    if (now < this.notBefore) return [];
    const reaped = await this.options.store.jobs.reapExpiredLeases(now);
    for (const job of reaped) {
      this.options.logger.warn("lease expired", { jobId: job.id, attempt: job.attempt, state: job.state });
      this.options.onReaped?.(job);
    }
    return reaped;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
