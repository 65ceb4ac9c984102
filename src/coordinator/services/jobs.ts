/** Submitting, canceling and ending jobs: the logic between the routes and the store. */
import type { Clock } from "../../common/clock.ts";
import type { Logger } from "../../common/logger.ts";
import { JobSpecInput, NotFoundError, validationErrorFrom } from "../../protocol/index.ts";
import type { AttemptOutcome, JobView } from "../../protocol/index.ts";
import type { AttemptRef, EntryResult, JobDetail, JobRecord, Store } from "../../store/index.ts";
import { jobView } from "../views.ts";
import type { CoordinatorMetrics } from "./metrics.ts";
import type { Repositories } from "./repositories.ts";
import type { JobSecrets } from "../secrets/job-secrets.ts";

export interface JobServiceOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  repositories: Repositories;
  metrics: CoordinatorMetrics;
  secrets: JobSecrets;
}

export class JobService {
  private readonly options: JobServiceOptions;

  constructor(options: JobServiceOptions) {
    this.options = options;
  }

  /** Validates a spec, resolves its commit to a sha, and queues it. Nothing is stored on error. */
  async submit(input: unknown): Promise<JobView> {
    const parsed = JobSpecInput.safeParse(input);
    if (!parsed.success) throw validationErrorFrom(parsed.error, "invalid job spec");
    const spec = parsed.data;
    // Refused before anything else when this coordinator may not keep the job's secrets.
    this.options.secrets.check(spec);
    let ref: string | null = null;
    let commit: string | null = null;
    if (spec.repository !== undefined) {
      ref = spec.commit ?? "HEAD";
      commit = await this.options.repositories.resolveCommit(spec.repository, ref);
    }
    const job = await this.options.store.jobs.enqueue({ ...this.options.secrets.seal(commit ? { ...spec, commit } : spec), ref, commit }, this.options.clock.now());
    this.options.logger.info("job queued", { jobId: job.id, queue: job.queue, repository: job.repository, commit });
    return jobView(await this.detail(job.id));
  }

  async detail(id: number): Promise<JobDetail> {
    const detail = await this.options.store.jobs.getJob(id);
    if (!detail) throw new NotFoundError(`job ${id} does not exist`);
    return detail;
  }

  async view(id: number): Promise<JobView> {
    return jobView(await this.detail(id));
  }

  async cancel(id: number): Promise<JobView> {
    await this.options.store.jobs.requestCancel(id, this.options.clock.now());
    this.options.logger.info("cancel requested", { jobId: id });
    return this.view(id);
  }

  /** `at`: when it happened, on the coordinator's clock (a batched report's event comes late). */
  async startEntry(ref: AttemptRef, key: string, at = this.options.clock.now()): Promise<void> {
    const { entry, queuedAt, queue } = await this.options.store.jobs.startEntry(ref, key, at);
    if (entry.kind === "step" && entry.index === 1 && entry.startedAt !== null) this.options.metrics.pickupLatency.observe({ queue }, (entry.startedAt - queuedAt) / 1000);
  }

  async finishEntry(ref: AttemptRef, key: string, result: EntryResult, at = this.options.clock.now()): Promise<void> {
    const entry = await this.options.store.jobs.finishEntry(ref, key, result, at);
    if (entry.kind === "step" && result.state !== "skipped") this.options.metrics.stepDuration.observe({ outcome: result.state }, result.durationMs / 1000);
  }

  async finishAttempt(ref: AttemptRef, outcome: AttemptOutcome, message: string | null): Promise<JobRecord> {
    const job = await this.options.store.jobs.finishAttempt(ref, outcome, message, this.options.clock.now());
    const startedAt = job.startedAt;
    const ended = job.state === "queued" ? "errored" : job.state;
    this.options.metrics.jobsFinished.inc({ outcome: ended });
    if (startedAt !== null) this.options.metrics.jobDuration.observe({ outcome: ended }, (this.options.clock.now() - startedAt) / 1000);
    this.options.logger.info("attempt ended", { jobId: job.id, attempt: ref.attempt, outcome, state: job.state });
    return job;
  }
}
