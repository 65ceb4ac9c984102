/**
 * Jobs, attempts, entries and executors in Postgres, shared by every coordinator.
 *
 * State machine: as in the SQLite backend (queued -(claim)-> processing -(finishAttempt | reap)->
 * terminal, or back to queued while attempts remain; `token_hash` is cleared when an attempt
 * ends, which fences its executor out). Locking, per transition:
 * - claim: `airlock_claim`, FOR UPDATE SKIP LOCKED, so concurrent claimers on any coordinator
 *   never wait for each other and never get the same job;
 * - writes of an attempt (entries, logs, artifacts): the job row FOR SHARE, then the entry row
 *   FOR UPDATE (always jobs before entries, so no deadlock);
 * - finishAttempt, requestCancel: the job row FOR UPDATE;
 * - reap: lapsed rows FOR UPDATE SKIP LOCKED, so every coordinator may sweep at once and a row
 *   being heartbeated or ended right now is simply left to that transaction;
 * - heartbeat: one UPDATE, re-checked against the latest row version, so a job reaped meanwhile is
 *   not reported known.
 * Changes are announced through the Announcer (index.ts): claimable jobs inside the transaction,
 * everything to this process right after commit, other job changes to other processes batched.
 */
import { ConflictError, isolationRank, LeaseLostError, NotFoundError } from "../../protocol/index.ts";
import type { AttemptOutcome, ExecutorIdentity, JobState } from "../../protocol/index.ts";
import { leaseExpiredMessages, toEntry, toJob, type EntryRow, type JobRow } from "../rows.ts";
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
  TokenLookup,
} from "../store.ts";
import type { PostgresDatabase, Queryable } from "./database.ts";
import type { Announcer } from "./index.ts";

interface ExecutorRow {
  name: string;
  hostname: string;
  version: string;
  runtime: string;
  isolation: ExecutorRecord["isolation"];
  queues: string[];
  first_seen_at: number;
  last_heartbeat_at: number;
}

/** Throws LeaseLostError unless `ref` is still the job's live attempt; share-locks the job row. */
export async function assertLive(client: Queryable, ref: AttemptRef): Promise<{ cancelRequested: boolean }> {
  const { rows } = await client.query<{ cancel_requested: boolean }>(
    "SELECT cancel_requested FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'processing' FOR SHARE",
    [ref.jobId, ref.attempt],
  );
  const row = rows[0];
  if (!row) throw new LeaseLostError();
  return { cancelRequested: row.cancel_requested };
}

export class PostgresJobStore implements JobStore {
  private readonly db: PostgresDatabase;
  private readonly announce: Announcer;

  constructor(db: PostgresDatabase, announce: Announcer) {
    this.db = db;
    this.announce = announce;
  }

  async enqueue(job: NewJob, now: number): Promise<JobRecord> {
    const rows = await this.db.query<JobRow>(
      `WITH inserted AS (
         INSERT INTO jobs (queue, repository, ref, commit_sha, spec, state, max_attempts, isolation, isolation_rank, created_at, queued_at)
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $9) RETURNING *
       )
       SELECT inserted.*, pg_notify($10, json_build_object('o', $11::text, 'q', queue, 'i', isolation)::text) FROM inserted`,
      [
        job.spec.queue,
        job.spec.repository ?? null,
        job.ref,
        job.commit,
        JSON.stringify(job.spec),
        job.spec.maxAttempts,
        job.spec.isolation,
        isolationRank(job.spec.isolation),
        now,
        this.announce.channel,
        this.announce.origin,
      ],
      "airlock_enqueue",
    );
    const record = toJob(rows[0] as JobRow);
    this.announce.committed([{ kind: "queued", queue: record.queue, isolation: record.isolation }]);
    return record;
  }

  async claim(request: ClaimRequest, now: number): Promise<JobRecord | undefined> {
    const { executor } = request;
    const maxRank = Math.max(...executor.isolation.map(isolationRank));
    const rows = await this.db.query<JobRow>("SELECT * FROM airlock_claim($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)", [
      request.preference ? [...request.preference] : executor.queues,
      request.preference !== undefined,
      maxRank,
      executor.executorName,
      executor.hostname,
      executor.version,
      executor.runtime,
      JSON.stringify(executor.isolation),
      JSON.stringify(executor.queues),
      request.tokenHash,
      now,
      request.leaseMs,
    ], "airlock_claim");
    const row = rows[0];
    if (!row) return undefined;
    const job = toJob(row);
    this.announce.committed([{ kind: "job", jobId: job.id }]);
    return job;
  }

  async heartbeat(executor: ExecutorIdentity, jobIds: number[], leaseMs: number, now: number): Promise<{ knownIds: number[]; cancelIds: number[] }> {
    // One statement: the executor upsert and the lease extension commit together.
    const rows = await this.db.query<{ id: number; cancel_requested: boolean }>(
      `WITH seen AS (
         INSERT INTO executors (name, hostname, version, runtime, isolation, queues, first_seen_at, last_heartbeat_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (name) DO UPDATE SET hostname = excluded.hostname, version = excluded.version, runtime = excluded.runtime,
           isolation = excluded.isolation, queues = excluded.queues, last_heartbeat_at = excluded.last_heartbeat_at
       )
       UPDATE jobs SET lease_expires_at = $8
       WHERE id = ANY ($9::bigint[]) AND state = 'processing' AND executor_name = $1
       RETURNING id, cancel_requested`,
      [
        executor.executorName,
        executor.hostname,
        executor.version,
        executor.runtime,
        JSON.stringify(executor.isolation),
        JSON.stringify(executor.queues),
        now,
        now + leaseMs,
        jobIds,
      ],
      "airlock_heartbeat",
    );
    const knownIds = rows.map((row) => row.id).sort((a, b) => a - b);
    const cancelIds = rows.filter((row) => row.cancel_requested).map((row) => row.id).sort((a, b) => a - b);
    return { knownIds, cancelIds };
  }

  async findAttempt(tokenHash: string): Promise<TokenLookup | undefined> {
    const rows = await this.db.query<{ job_id: number; attempt: number; repository: string | null; executor_name: string; live: boolean }>(
      `SELECT a.job_id, a.attempt, j.repository, a.executor_name,
         coalesce(j.token_hash = a.token_hash AND j.state = 'processing' AND j.attempt = a.attempt, false) AS live
       FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE a.token_hash = $1`,
      [tokenHash],
      "airlock_find_attempt",
    );
    const row = rows[0];
    if (!row) return undefined;
    return { jobId: row.job_id, attempt: row.attempt, repository: row.repository, executorName: row.executor_name, live: row.live };
  }

  async startEntry(ref: AttemptRef, key: string, now: number): Promise<{ entry: EntryRecord; queuedAt: number }> {
    const result = await this.db.tx(async (client) => {
      await assertLive(client, ref);
      if (key === "finalize") {
        await client.query(
          `INSERT INTO entries (job_id, attempt, key, kind, idx, state)
           SELECT $1, $2, 'finalize', 'finalize', max(idx) + 1, 'pending' FROM entries WHERE job_id = $1 AND attempt = $2
           ON CONFLICT DO NOTHING`,
          [ref.jobId, ref.attempt],
        );
      }
      const { rows } = await client.query<EntryRow & { queued_at: number }>(
        `UPDATE entries e SET state = 'running', started_at = coalesce(e.started_at, $4)
         FROM jobs j WHERE j.id = e.job_id AND e.job_id = $1 AND e.attempt = $2 AND e.key = $3 AND e.state IN ('pending', 'running')
         RETURNING e.*, j.queued_at`,
        [ref.jobId, ref.attempt, key, now],
      );
      const row = rows[0];
      if (!row) throw await this.entryProblem(client, ref, key);
      return { entry: toEntry(row), queuedAt: row.queued_at };
    });
    this.announce.committed([{ kind: "job", jobId: ref.jobId }]);
    return result;
  }

  async finishEntry(ref: AttemptRef, key: string, result: EntryResult, now: number): Promise<EntryRecord> {
    const entry = await this.db.tx(async (client) => {
      await assertLive(client, ref);
      const { rows } = await client.query<EntryRow>(
        `UPDATE entries SET state = $4, exit_code = $5, duration_ms = $6, message = $7, finished_at = $8, started_at = coalesce(started_at, $8)
         WHERE job_id = $1 AND attempt = $2 AND key = $3 AND state IN ('pending', 'running') RETURNING *`,
        [ref.jobId, ref.attempt, key, result.state, result.exitCode, result.durationMs, result.message ?? null, now],
      );
      const row = rows[0];
      if (!row) {
        // A retried finish (its reply was lost, e.g. when a coordinator died) finds the same result.
        const { rows: ended } = await client.query<EntryRow>("SELECT * FROM entries WHERE job_id = $1 AND attempt = $2 AND key = $3", [ref.jobId, ref.attempt, key]);
        const same = ended[0];
        if (same && same.state === result.state && same.exit_code === result.exitCode) return toEntry(same);
        throw await this.entryProblem(client, ref, key);
      }
      return toEntry(row);
    });
    this.announce.committed([{ kind: "job", jobId: ref.jobId }]);
    return entry;
  }

  private async entryProblem(client: Queryable, ref: AttemptRef, key: string): Promise<Error> {
    const { rows } = await client.query<{ state: string }>("SELECT state FROM entries WHERE job_id = $1 AND attempt = $2 AND key = $3", [ref.jobId, ref.attempt, key]);
    const row = rows[0];
    return row ? new ConflictError(`log entry "${key}" already ended (${row.state})`) : new NotFoundError(`job ${ref.jobId} has no log entry "${key}"`);
  }

  async finishAttempt(ref: AttemptRef, outcome: AttemptOutcome, message: string | null, now: number): Promise<JobRecord> {
    const rows = await this.db.query<JobRow>("SELECT * FROM airlock_finish_attempt($1, $2, $3, $4, $5, $6)", [ref.jobId, ref.attempt, outcome, message, now, this.announce.origin], "airlock_finish_attempt");
    const row = rows[0];
    if (!row) throw new LeaseLostError();
    const job = toJob(row);
    this.announce.committed(jobChanges(job));
    return job;
  }

  /** Moves a processing job out of its attempt: to a terminal state, or back to the queue. */
  private async endAttempt(client: Queryable, jobId: number, state: JobState, message: string | null, now: number): Promise<JobRecord> {
    const { rows } = await client.query<JobRow>(
      `UPDATE jobs SET state = $2, failure_message = $3, token_hash = NULL, lease_expires_at = NULL,
         finished_at = CASE WHEN $2 = 'queued' THEN NULL ELSE $4::bigint END,
         queued_at = CASE WHEN $2 = 'queued' THEN $4::bigint ELSE queued_at END,
         executor_name = CASE WHEN $2 = 'queued' THEN NULL ELSE executor_name END
       WHERE id = $1 RETURNING *`,
      [jobId, state, message, now],
    );
    return toJob(rows[0] as JobRow);
  }

  async requestCancel(jobId: number, now: number): Promise<JobRecord> {
    const job = await this.db.tx(async (client) => {
      const { rows } = await client.query<JobRow>("SELECT * FROM jobs WHERE id = $1 FOR UPDATE", [jobId]);
      const row = rows[0];
      if (!row) throw new NotFoundError(`job ${jobId} does not exist`);
      const current = toJob(row);
      let updated: JobRow[];
      if (current.state === "queued") {
        ({ rows: updated } = await client.query<JobRow>(
          `UPDATE jobs SET state = 'canceled', cancel_requested = true, finished_at = $2, failure_message = 'canceled before it started'
           WHERE id = $1 RETURNING *`,
          [jobId, now],
        ));
      } else if (current.state === "processing") {
        ({ rows: updated } = await client.query<JobRow>("UPDATE jobs SET cancel_requested = true WHERE id = $1 RETURNING *", [jobId]));
      } else {
        throw new ConflictError(`job ${jobId} already ended (${current.state})`);
      }
      return toJob(updated[0] as JobRow);
    });
    this.announce.committed([{ kind: "job", jobId }]);
    return job;
  }

  async reapExpiredLeases(now: number): Promise<JobRecord[]> {
    const reaped = await this.db.tx(async (client) => {
      const { rows } = await client.query<JobRow>(
        "SELECT * FROM jobs WHERE state = 'processing' AND lease_expires_at < $1 ORDER BY id FOR UPDATE SKIP LOCKED",
        [now],
      );
      const ended: JobRecord[] = [];
      for (const row of rows) {
        const job = toJob(row);
        const message = leaseExpiredMessages(job);
        await client.query("UPDATE attempts SET finished_at = $3, outcome = 'errored', message = $4 WHERE job_id = $1 AND attempt = $2", [
          job.id,
          job.attempt,
          now,
          message.attempt,
        ]);
        const state: JobState = job.cancelRequested ? "canceled" : job.attempt < job.maxAttempts ? "queued" : "errored";
        ended.push(await this.endAttempt(client, job.id, state, message.job, now));
      }
      await this.announce.queuedInTx(client, ended.flatMap(jobChanges));
      return ended;
    });
    this.announce.committed(reaped.flatMap(jobChanges));
    return reaped;
  }

  async getJob(id: number): Promise<JobDetail | undefined> {
    // One round trip: the job, and the entries and artifacts of its current attempt.
    const rows = await this.db.query<{ job: JobRow; entries: EntryRow[]; artifacts: { name: string; size: number; sha256: string; created_at: number }[] }>(
      `SELECT to_jsonb(j) AS job,
         coalesce((SELECT jsonb_agg(to_jsonb(e) ORDER BY e.idx) FROM entries e WHERE e.job_id = j.id AND e.attempt = j.attempt), '[]') AS entries,
         coalesce((SELECT jsonb_agg(jsonb_build_object('name', a.name, 'size', a.size, 'sha256', a.sha256, 'created_at', a.created_at) ORDER BY a.name COLLATE "C")
           FROM artifacts a WHERE a.job_id = j.id AND a.attempt = j.attempt), '[]') AS artifacts
       FROM jobs j WHERE j.id = $1`,
      [id],
    );
    const row = rows[0];
    if (!row) return undefined;
    return {
      job: toJob(row.job),
      entries: row.entries.map(toEntry),
      artifacts: row.artifacts.map((artifact) => ({ name: artifact.name, size: Number(artifact.size), sha256: artifact.sha256, createdAt: Number(artifact.created_at) })),
    };
  }

  async listJobs(filter: JobFilter): Promise<JobRecord[]> {
    const rows = await this.db.query<JobRow>(
      `SELECT * FROM jobs WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR queue = $2)
         AND ($3::text IS NULL OR repository = $3) AND ($4::bigint IS NULL OR id < $4)
       ORDER BY id DESC LIMIT $5`,
      [filter.state ?? null, filter.queue ?? null, filter.repository ?? null, filter.before ?? null, filter.limit],
    );
    return rows.map(toJob);
  }

  async listExecutors(): Promise<ExecutorRecord[]> {
    const running = new Map<string, number[]>();
    for (const row of await this.db.query<{ id: number; executor_name: string }>("SELECT id, executor_name FROM jobs WHERE state = 'processing' ORDER BY id")) {
      running.set(row.executor_name, [...(running.get(row.executor_name) ?? []), row.id]);
    }
    const rows = await this.db.query<ExecutorRow>("SELECT * FROM executors ORDER BY last_heartbeat_at DESC");
    return rows.map((row) => ({
      executorName: row.name,
      hostname: row.hostname,
      version: row.version,
      runtime: row.runtime,
      isolation: row.isolation,
      queues: row.queues,
      firstSeenAt: row.first_seen_at,
      lastHeartbeatAt: row.last_heartbeat_at,
      runningJobIds: running.get(row.name) ?? [],
    }));
  }

  async queueStats(): Promise<QueueStats[]> {
    const rows = await this.db.query<{ queue: string; queued: number; processing: number; oldest: number | null }>(
      `SELECT queue, count(*) FILTER (WHERE state = 'queued')::bigint AS queued, count(*) FILTER (WHERE state = 'processing')::bigint AS processing,
         min(queued_at) FILTER (WHERE state = 'queued') AS oldest
       FROM jobs WHERE state IN ('queued', 'processing') GROUP BY queue ORDER BY queue COLLATE "C"`,
    );
    return rows.map((row) => ({ name: row.queue, queued: row.queued, processing: row.processing, oldestQueuedAt: row.oldest }));
  }
}

/** What ending an attempt announces: the job changed, and it is claimable again if requeued. */
function jobChanges(job: JobRecord): ({ kind: "job"; jobId: number } | { kind: "queued"; queue: string; isolation: JobRecord["isolation"] })[] {
  return job.state === "queued" ? [{ kind: "job", jobId: job.id }, { kind: "queued", queue: job.queue, isolation: job.isolation }] : [{ kind: "job", jobId: job.id }];
}
