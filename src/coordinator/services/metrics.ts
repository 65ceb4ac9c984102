/** Prometheus metrics for one coordinator (its own registry, so several can live in one process). */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Clock } from "../../common/clock.ts";
import type { Store } from "../../store/index.ts";

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
const DURATION_BUCKETS = [0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 150, 300, 600, 1200, 1800, 3600];

export class CoordinatorMetrics {
  readonly registry = new Registry();
  readonly queueWait: Histogram<"queue">;
  readonly pickupLatency: Histogram<"queue">;
  readonly jobDuration: Histogram<"outcome">;
  readonly stepDuration: Histogram<"outcome">;
  readonly jobsFinished: Counter<"outcome">;
  readonly leasesExpired: Counter;
  readonly jobEvents: Counter<"via">;
  readonly jobReports: Counter<"via">;

  constructor(store: Store, clock: Clock, aliveWindowMs: number) {
    const registers = [this.registry];
    this.queueWait = new Histogram({
      name: "airlock_queue_wait_seconds",
      help: "Time a job waited in its queue before an executor claimed it",
      labelNames: ["queue"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.pickupLatency = new Histogram({
      name: "airlock_pickup_latency_seconds",
      help: "Time from a job being queued to its first step starting",
      labelNames: ["queue"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.jobDuration = new Histogram({
      name: "airlock_job_duration_seconds",
      help: "Duration of job attempts by outcome",
      labelNames: ["outcome"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.stepDuration = new Histogram({
      name: "airlock_step_duration_seconds",
      help: "Duration of steps by outcome",
      labelNames: ["outcome"],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.jobsFinished = new Counter({ name: "airlock_jobs_finished_total", help: "Job attempts ended, by outcome", labelNames: ["outcome"], registers });
    this.leasesExpired = new Counter({ name: "airlock_leases_expired_total", help: "Attempts reclaimed after their lease lapsed", registers });
    this.jobEvents = new Counter({ name: "airlock_job_events_total", help: "Executor reports of jobs applied (starts, finishes, log appends, ends), by how they came: a request of their own (route), batched (events) or on a dequeue", labelNames: ["via"], registers });
    this.jobReports = new Counter({ name: "airlock_job_report_requests_total", help: "Requests that carried executor reports of jobs, by kind (route, events, dequeue)", labelNames: ["via"], registers });
    new Gauge({
      name: "airlock_queue_depth",
      help: "Jobs waiting in each queue",
      labelNames: ["queue"],
      registers,
      async collect() {
        this.reset();
        for (const queue of await store.jobs.queueStats()) this.set({ queue: queue.name }, queue.queued);
      },
    });
    new Gauge({
      name: "airlock_queue_oldest_wait_seconds",
      help: "How long the oldest queued job of each queue has waited",
      labelNames: ["queue"],
      registers,
      async collect() {
        this.reset();
        const now = clock.now();
        for (const queue of await store.jobs.queueStats()) {
          this.set({ queue: queue.name }, queue.oldestQueuedAt === null ? 0 : (now - queue.oldestQueuedAt) / 1000);
        }
      },
    });
    new Gauge({
      name: "airlock_jobs_processing",
      help: "Jobs being run by executors",
      registers,
      async collect() {
        this.set((await store.jobs.queueStats()).reduce((sum, queue) => sum + queue.processing, 0));
      },
    });
    new Gauge({
      name: "airlock_executors_alive",
      help: "Executors that heartbeated within the lease window",
      registers,
      async collect() {
        const now = clock.now();
        this.set((await store.jobs.listExecutors()).filter((executor) => now - executor.lastHeartbeatAt <= aliveWindowMs).length);
      },
    });
  }
}
