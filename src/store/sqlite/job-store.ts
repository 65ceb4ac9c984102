/**
 * Jobs, attempts and entries in SQLite (executors: executors.ts).
 *
 * State machine (per job row): queued -(claim)-> processing -(finishAttempt | reap)-> terminal,
 * or back to queued when an errored/lapsed attempt has attempts left. `attempt` counts claims;
 * `token_hash` holds the latest attempt's token, live only while the job is processing that
 * attempt, which is what fences a stale executor out. Ending an attempt writes its attempts row,
 * where `findAttempt` finds the token afterwards. Log entries are made when first used (see
 * rows.ts). Each transition is one `write()` transaction.
 */
import { ConflictError, isolationRank, LeaseLostError, networkRank, NotFoundError } from "../../protocol/index.ts";
import type { AttemptOutcome, ExecutorIdentity, JobSpec, JobState, WarmPoolReport } from "../../protocol/index.ts";
import type {
  AttemptRef,
  ClaimRequest,
  EntryRecord,
  EntryResult,
  ExecutorRecord,
  JobDetail,
  JobFilter,
  JobRecord,
  JobStore,
  NewJob,
  QueueStats,
  StoreChange,
  TokenLookup,
} from "../store.ts";
import { storedSecrets } from "../secret-rows.ts";
import { currentEntries, leaseExpiredMessages, plannedEntry, toEntry, toJob, type EntryRow, type JobRow } from "../rows.ts";
import type { SqliteDatabase } from "./database.ts";
import { listExecutors, upsertExecutor } from "./executors.ts";


export class SqliteJobStore implements JobStore {
  private readonly db: SqliteDatabase;
  private readonly emit: (change: StoreChange) => void;

  constructor(db: SqliteDatabase, emit: (change: StoreChange) => void) {
    this.db = db;
    this.emit = emit;
  }

  async enqueue(job: NewJob, now: number): Promise<JobRecord> {
    const { spec, secrets } = storedSecrets(job);
    const row = this.db.write(() => {
      const inserted = this.db.get<JobRow>(
        `INSERT INTO jobs (queue, repository, ref, commit_sha, spec, state, max_attempts, isolation, isolation_rank, network_rank, created_at, queued_at)
         VALUES ($queue, $repository, $ref, $commit, $spec, 'queued', $maxAttempts, $isolation, $rank, $networkRank, $now, $now) RETURNING *`,
        {
          queue: job.spec.queue,
          repository: job.spec.repository ?? null,
          ref: job.ref,
          commit: job.commit,
          spec: JSON.stringify(spec),
          maxAttempts: job.spec.maxAttempts,
          isolation: job.spec.isolation,
          rank: isolationRank(job.spec.isolation),
          networkRank: networkRank(job.spec.network.mode),
          now,
        },
      ) as JobRow;
      for (const secret of secrets) {
        this.db.run("INSERT INTO job_secrets (job_id, name, key_id, nonce, ciphertext) VALUES ($id, $name, $keyId, $nonce, $ciphertext)", {
          id: Number(inserted.id),
          name: secret.name,
          keyId: secret.keyId,
          nonce: secret.nonce,
          ciphertext: secret.ciphertext,
        });
      }
      return inserted;
    });
    const record = toJob(row);
    this.emit({ kind: "queued", queue: record.queue, isolation: record.isolation, network: record.network });
    return record;
  }

  async claim(request: ClaimRequest, now: number): Promise<JobRecord | undefined> {
    const { executor } = request;
    const maxRank = Math.max(...executor.isolation.map(isolationRank));
    const claimed = this.db.write(() => {
      upsertExecutor(this.db, executor, now);
      const candidate = this.pickCandidate(request.preference ? [...request.preference] : [executor.queues], maxRank, networkRank(executor.network));
      if (!candidate) return undefined;
      const row = this.db.get<JobRow>(
        `UPDATE jobs SET state = 'processing', attempt = attempt + 1, executor_name = $executor, token_hash = $token,
           started_at = $now, finished_at = NULL, failure_message = NULL, lease_expires_at = $lease
         WHERE id = $id AND state = 'queued' RETURNING *`,
        { executor: executor.executorName, token: request.tokenHash, now, lease: now + request.leaseMs, id: candidate.id },
      );
      return row ? toJob(row) : undefined;
    });
    if (claimed) this.emit({ kind: "job", jobId: claimed.id });
    return claimed;
  }

  /**
   * The oldest claimable job of the first queue group that has one (see ClaimRequest.preference).
   * One query per queue, each an ordered walk of the `jobs_dequeue` index: `queue IN (...)` made
   * SQLite read every queued job of every queue and sort them, a cost that grew with the backlog.
   */
  private pickCandidate(groups: (string | readonly string[])[], maxRank: number, maxNetworkRank: number): { id: number } | undefined {
    for (const group of groups) {
      let best: { id: number; queued_at: number } | undefined;
      for (const queue of typeof group === "string" ? [group] : group) {
        const candidate = this.db.get<{ id: number; queued_at: number }>(
          `SELECT id, queued_at FROM jobs WHERE state = 'queued' AND queue = $queue
             AND isolation_rank <= $maxRank AND network_rank <= $maxNetworkRank ORDER BY queued_at, id LIMIT 1`,
          { queue, maxRank, maxNetworkRank },
        );
        if (candidate && (!best || candidate.queued_at < best.queued_at || (candidate.queued_at === best.queued_at && candidate.id < best.id))) best = candidate;
      }
      if (best) return best;
    }
    return undefined;
  }

  async heartbeat(executor: ExecutorIdentity, jobIds: number[], leaseMs: number, now: number, warmPool: WarmPoolReport | null = null): Promise<{ knownIds: number[]; cancelIds: number[] }> {
    return this.db.write(() => {
      upsertExecutor(this.db, executor, now, warmPool);
      const rows = this.db.all<{ id: number; cancel_requested: number }>(
        `UPDATE jobs SET lease_expires_at = $lease
         WHERE id IN (SELECT value FROM json_each($ids)) AND state = 'processing' AND executor_name = $executor
         RETURNING id, cancel_requested`,
        { lease: now + leaseMs, ids: JSON.stringify(jobIds), executor: executor.executorName },
      );
      const knownIds = rows.map((row) => Number(row.id)).sort((a, b) => a - b);
      const cancelIds = rows.filter((row) => Number(row.cancel_requested) === 1).map((row) => Number(row.id));
      return { knownIds, cancelIds };
    });
  }

  async findAttempt(tokenHash: string): Promise<TokenLookup | undefined> {
    const row = this.db.get<{ job_id: number; attempt: number; repository: string | null; executor_name: string; live: number }>(
      `SELECT id AS job_id, attempt, repository, executor_name, 1 AS live FROM jobs WHERE token_hash = $hash AND state = 'processing'
       UNION ALL
       SELECT a.job_id, a.attempt, j.repository, a.executor_name, 0 FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE a.token_hash = $hash
       LIMIT 1`,
      { hash: tokenHash },
    );
    if (!row) return undefined;
    return { jobId: Number(row.job_id), attempt: Number(row.attempt), repository: row.repository, executorName: row.executor_name, live: Number(row.live) === 1 };
  }

  /** Throws LeaseLostError unless `ref` is still the job's live attempt. Call inside write(). */
  assertLive(ref: AttemptRef): { cancelRequested: boolean; spec: string; queuedAt: number } {
    const row = this.db.get<{ attempt: number; state: string; cancel_requested: number; spec: string; queued_at: number }>(
      "SELECT attempt, state, cancel_requested, spec, queued_at FROM jobs WHERE id = $id",
      { id: ref.jobId },
    );
    if (!row || Number(row.attempt) !== ref.attempt || row.state !== "processing") throw new LeaseLostError();
    return { cancelRequested: Number(row.cancel_requested) === 1, spec: row.spec, queuedAt: Number(row.queued_at) };
  }

  /** Where `key` sits in the live attempt's job (see `plannedEntry`); NotFoundError for a key the job lacks. Call inside write(). */
  private liveEntrySlot(ref: AttemptRef, key: string): { kind: EntryRecord["kind"]; index: number; queuedAt: number; queue: string } {
    const live = this.assertLive(ref);
    const spec = JSON.parse(live.spec) as JobSpec;
    const slot = plannedEntry(spec, key);
    if (!slot) throw new NotFoundError(`job ${ref.jobId} has no log entry "${key}"`);
    return { ...slot, queuedAt: live.queuedAt, queue: spec.queue };
  }

  /** Makes the pending entry `key` of a live attempt if it has no row yet (an append before the step started). Call inside write(). */
  ensureEntry(ref: AttemptRef, key: string): void {
    const slot = this.liveEntrySlot(ref, key);
    this.db.run("INSERT OR IGNORE INTO entries (job_id, attempt, key, kind, idx, state) VALUES ($id, $attempt, $key, $kind, $idx, 'pending')", {
      id: ref.jobId,
      attempt: ref.attempt,
      key,
      kind: slot.kind,
      idx: slot.index,
    });
  }

  async startEntry(ref: AttemptRef, key: string, now: number): Promise<{ entry: EntryRecord; queuedAt: number; queue: string }> {
    const result = this.db.write(() => {
      const slot = this.liveEntrySlot(ref, key);
      const row = this.db.get<EntryRow>(
        `INSERT INTO entries (job_id, attempt, key, kind, idx, state, started_at) VALUES ($id, $attempt, $key, $kind, $idx, 'running', $now)
         ON CONFLICT (job_id, attempt, key) DO UPDATE SET state = 'running', started_at = coalesce(started_at, excluded.started_at)
         WHERE state IN ('pending', 'running') RETURNING *`,
        { id: ref.jobId, attempt: ref.attempt, key, kind: slot.kind, idx: slot.index, now },
      );
      if (!row) throw this.entryProblem(ref, key);
      return { entry: toEntry(row), queuedAt: slot.queuedAt, queue: slot.queue };
    });
    this.emit({ kind: "job", jobId: ref.jobId });
    return result;
  }

  async finishEntry(ref: AttemptRef, key: string, result: EntryResult, now: number): Promise<EntryRecord> {
    const entry = this.db.write(() => {
      const slot = this.liveEntrySlot(ref, key);
      const row = this.db.get<EntryRow>(
        `INSERT INTO entries (job_id, attempt, key, kind, idx, state, exit_code, duration_ms, message, started_at, finished_at)
         VALUES ($id, $attempt, $key, $kind, $idx, $state, $exitCode, $duration, $message, $now, $now)
         ON CONFLICT (job_id, attempt, key) DO UPDATE SET state = excluded.state, exit_code = excluded.exit_code, duration_ms = excluded.duration_ms,
           message = excluded.message, finished_at = excluded.finished_at, started_at = coalesce(started_at, excluded.started_at)
         WHERE state IN ('pending', 'running') RETURNING *`,
        {
          kind: slot.kind,
          idx: slot.index,
          state: result.state,
          exitCode: result.exitCode,
          duration: result.durationMs,
          message: result.message ?? null,
          now,
          id: ref.jobId,
          attempt: ref.attempt,
          key,
        },
      );
      if (!row) {
        // A retried finish (its reply was lost, e.g. when a coordinator died) finds the same result.
        const ended = this.db.get<EntryRow>("SELECT * FROM entries WHERE job_id = $id AND attempt = $attempt AND key = $key", { id: ref.jobId, attempt: ref.attempt, key });
        if (ended && ended.state === result.state && (ended.exit_code === null ? null : Number(ended.exit_code)) === result.exitCode) return toEntry(ended);
        throw this.entryProblem(ref, key);
      }
      return toEntry(row);
    });
    this.emit({ kind: "job", jobId: ref.jobId });
    return entry;
  }

  /** Why an entry that exists could not be started or finished: it already ended. */
  private entryProblem(ref: AttemptRef, key: string): Error {
    const row = this.db.get<{ state: string }>("SELECT state FROM entries WHERE job_id = $id AND attempt = $attempt AND key = $key", {
      id: ref.jobId,
      attempt: ref.attempt,
      key,
    });
    return new ConflictError(`log entry "${key}" already ended (${row?.state ?? "unknown"})`);
  }

  async finishAttempt(ref: AttemptRef, outcome: AttemptOutcome, message: string | null, now: number): Promise<JobRecord> {
    const job = this.db.write(() => {
      // One read both fences the attempt (as assertLive does) and gives the row the attempts row is made from.
      const row = this.db.get<JobRow>("SELECT * FROM jobs WHERE id = $id", { id: ref.jobId });
      if (!row || Number(row.attempt) !== ref.attempt || row.state !== "processing") throw new LeaseLostError();
      const cancelRequested = Number(row.cancel_requested) === 1;
      const retry = outcome === "errored" && !cancelRequested && Number(row.attempt) < Number(row.max_attempts);
      const state: JobState = cancelRequested ? "canceled" : retry ? "queued" : outcome;
      this.recordAttempt(row, outcome, message, now);
      return this.endAttempt(ref.jobId, state, cancelRequested ? (message ?? "canceled") : message, now);
    });
    this.emit({ kind: "job", jobId: ref.jobId });
    if (job.state === "queued") this.emit({ kind: "queued", queue: job.queue, isolation: job.isolation, network: job.network });
    return job;
  }

  /** Writes the attempts row of the processing job `row`'s attempt, which is ending. */
  private recordAttempt(row: JobRow, outcome: AttemptOutcome, message: string | null, now: number): void {
    this.db.run(
      `INSERT INTO attempts (job_id, attempt, executor_name, token_hash, started_at, finished_at, outcome, message)
       VALUES ($id, $attempt, $executor, $token, $startedAt, $now, $outcome, $message)`,
      { id: row.id, attempt: row.attempt, executor: row.executor_name, token: row.token_hash ?? null, startedAt: row.started_at, now, outcome, message },
    );
  }

  /** Moves a processing job out of its attempt: to a terminal state, or back to the queue. */
  private endAttempt(jobId: number, state: JobState, message: string | null, now: number): JobRecord {
    const row = this.db.get<JobRow>(
      `UPDATE jobs SET state = $state, failure_message = $message, lease_expires_at = NULL,
         finished_at = CASE WHEN $state = 'queued' THEN NULL ELSE $now END,
         queued_at = CASE WHEN $state = 'queued' THEN $now ELSE queued_at END,
         executor_name = CASE WHEN $state = 'queued' THEN NULL ELSE executor_name END
       WHERE id = $id RETURNING *`,
      { state, message, now, id: jobId },
    );
    return toJob(row as JobRow);
  }

  async requestCancel(jobId: number, now: number): Promise<JobRecord> {
    const job = this.db.write(() => {
      const row = this.db.get<JobRow>("SELECT * FROM jobs WHERE id = $id", { id: jobId });
      if (!row) throw new NotFoundError(`job ${jobId} does not exist`);
      const current = toJob(row);
      if (current.state === "queued") {
        return toJob(
          this.db.get<JobRow>(
            `UPDATE jobs SET state = 'canceled', cancel_requested = 1, finished_at = $now, failure_message = 'canceled before it started'
             WHERE id = $id RETURNING *`,
            { id: jobId, now },
          ) as JobRow,
        );
      }
      if (current.state === "processing") {
        return toJob(this.db.get<JobRow>("UPDATE jobs SET cancel_requested = 1 WHERE id = $id RETURNING *", { id: jobId }) as JobRow);
      }
      throw new ConflictError(`job ${jobId} already ended (${current.state})`);
    });
    this.emit({ kind: "job", jobId });
    return job;
  }

  async reapExpiredLeases(now: number): Promise<JobRecord[]> {
    const reaped = this.db.write(() => {
      const rows = this.db.all<JobRow>("SELECT * FROM jobs WHERE state = 'processing' AND lease_expires_at < $now", { now });
      return rows.map((row) => {
        const job = toJob(row);
        const message = leaseExpiredMessages(job);
        this.recordAttempt(row, "errored", message.attempt, now);
        const state: JobState = job.cancelRequested ? "canceled" : job.attempt < job.maxAttempts ? "queued" : "errored";
        return this.endAttempt(job.id, state, message.job, now);
      });
    });
    for (const job of reaped) {
      this.emit({ kind: "job", jobId: job.id });
      if (job.state === "queued") this.emit({ kind: "queued", queue: job.queue, isolation: job.isolation, network: job.network });
    }
    return reaped;
  }

  async getJob(id: number): Promise<JobDetail | undefined> {
    const row = this.db.get<JobRow>("SELECT * FROM jobs WHERE id = $id", { id });
    if (!row) return undefined;
    const job = toJob(row);
    const stored = this.db.all<EntryRow>("SELECT * FROM entries WHERE job_id = $id AND attempt = $attempt ORDER BY idx", { id, attempt: job.attempt }).map(toEntry);
    const entries = currentEntries(job, stored);
    const artifacts = this.db
      .all<{ name: string; size: number; sha256: string; created_at: number }>(
        "SELECT name, size, sha256, created_at FROM artifacts WHERE job_id = $id AND attempt = $attempt ORDER BY name",
        { id, attempt: job.attempt },
      )
      .map((artifact) => ({ name: artifact.name, size: Number(artifact.size), sha256: artifact.sha256, createdAt: Number(artifact.created_at) }));
    return { job, entries, artifacts };
  }

  async listJobs(filter: JobFilter): Promise<JobRecord[]> {
    return this.db
      .all<JobRow>(
        `SELECT * FROM jobs WHERE ($state IS NULL OR state = $state) AND ($queue IS NULL OR queue = $queue)
           AND ($repository IS NULL OR repository = $repository) AND ($before IS NULL OR id < $before)
         ORDER BY id DESC LIMIT $limit`,
        {
          state: filter.state ?? null,
          queue: filter.queue ?? null,
          repository: filter.repository ?? null,
          before: filter.before ?? null,
          limit: filter.limit,
        },
      )
      .map(toJob);
  }

  async listExecutors(): Promise<ExecutorRecord[]> {
    return listExecutors(this.db);
  }

  async queueStats(): Promise<QueueStats[]> {
    return this.db
      .all<{ queue: string; queued: number; processing: number; oldest: number | null }>(
        `SELECT queue, sum(state = 'queued') AS queued, sum(state = 'processing') AS processing,
           min(CASE WHEN state = 'queued' THEN queued_at END) AS oldest
         FROM jobs WHERE state IN ('queued', 'processing') GROUP BY queue ORDER BY queue`,
      )
      .map((row) => ({ name: row.queue, queued: Number(row.queued), processing: Number(row.processing), oldestQueuedAt: row.oldest === null ? null : Number(row.oldest) }));
  }
}
