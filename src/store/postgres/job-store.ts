/**
 * Jobs, attempts, entries and executors in Postgres, shared by every coordinator.
 *
 * State machine: as in the SQLite backend (queued -(claim)-> processing -(finishAttempt | reap)->
 * terminal, or back to queued while attempts remain). A job token is live while its job is
 * processing that attempt; ending the attempt (one UPDATE, the fence) writes its attempts row in
 * the same transaction, which is where `findAttempt` finds the token afterwards. Log entries are
 * made when first used (see rows.ts). Locking, per transition:
 * - claim: one statement (claims of one queue arriving together share one, claims.ts), FOR
 *   UPDATE SKIP LOCKED, so concurrent claimers on any coordinator never wait for each other and
 *   never get the same job;
 * - writes of an attempt (entries, logs, artifacts): the job row FOR SHARE, then the entry row
 *   (made on first use, INSERT ... ON CONFLICT) FOR UPDATE (always jobs before entries, so no
 *   deadlock);
 * - finishAttempt: one statement (ends arriving together share one, attempt-ends.ts), whose
 *   UPDATE locks the job row; requestCancel: the job row FOR UPDATE;
 * - reap: lapsed rows FOR UPDATE SKIP LOCKED, so every coordinator may sweep at once and a row
 *   being heartbeated or ended right now is simply left to that transaction;
 * - heartbeat: grouped with those arriving meanwhile into one statement (heartbeats.ts), whose
 *   UPDATE re-checks the latest row version, so a job reaped meanwhile is not reported known.
 * Changes are announced through the Announcer (index.ts): claimable jobs inside the transaction,
 * everything to this process right after commit, other job changes to other processes batched.
 */
import { ConflictError, isolationRank, LeaseLostError, networkRank, NotFoundError } from "../../protocol/index.ts";
import type { AttemptOutcome, ExecutorIdentity, JobSpec, JobState, WarmPoolReport } from "../../protocol/index.ts";
import { storedSecrets } from "../secret-rows.ts";
import { currentEntries, leaseExpiredMessages, plannedEntry, toEntry, toJob, type EntryRow, type JobRow } from "../rows.ts";
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
import type { PostgresDatabase, Queryable } from "./database.ts";
import { AttemptEnds } from "./attempt-ends.ts";
import { Claims, identityOf } from "./claims.ts";
import { HeartbeatGroups } from "./heartbeats.ts";
import type { Announcer } from "./index.ts";
import { FIND_ATTEMPT } from "./statements.ts";

interface ExecutorRow {
  name: string;
  hostname: string;
  version: string;
  protocol_version: number;
  runtime: string;
  isolation: ExecutorRecord["isolation"];
  queues: string[];
  first_seen_at: number;
  last_heartbeat_at: number;
  warm_pool: WarmPoolReport | null;
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

/**
 * Where `key` sits in the live attempt's job (see `plannedEntry`), and when the job was queued;
 * LeaseLostError unless `ref` is live, NotFoundError for a key the job lacks. Share-locks the job row.
 */
async function liveEntrySlot(client: Queryable, ref: AttemptRef, key: string): Promise<{ kind: EntryRecord["kind"]; index: number; queuedAt: number; queue: string }> {
  const { rows } = await client.query<{ spec: JobSpec; queued_at: number }>(
    "SELECT spec, queued_at FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'processing' FOR SHARE",
    [ref.jobId, ref.attempt],
  );
  const row = rows[0];
  if (!row) throw new LeaseLostError();
  const slot = plannedEntry(row.spec, key);
  if (!slot) throw new NotFoundError(`job ${ref.jobId} has no log entry "${key}"`);
  return { ...slot, queuedAt: row.queued_at, queue: row.spec.queue };
}

/** Makes the pending entry `key` of a live attempt if it has no row yet (an append before the step started). */
export async function ensureEntry(client: Queryable, ref: AttemptRef, key: string): Promise<void> {
  const slot = await liveEntrySlot(client, ref, key);
  await client.query("INSERT INTO entries (job_id, attempt, key, kind, idx, state) VALUES ($1, $2, $3, $4, $5, 'pending') ON CONFLICT DO NOTHING", [
    ref.jobId,
    ref.attempt,
    key,
    slot.kind,
    slot.index,
  ]);
}

const INSERT_JOB = `inserted AS (
  INSERT INTO jobs (queue, repository, ref, commit_sha, spec, state, max_attempts, isolation, isolation_rank, network_rank, created_at, queued_at)
  VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $12, $9, $9) RETURNING *
)`;
const SELECT_INSERTED = "SELECT inserted.*, pg_notify($10, json_build_object('o', $11::text, 'q', queue, 'i', isolation, 'n', network_rank)::text) FROM inserted";

export class PostgresJobStore implements JobStore {
  private readonly db: PostgresDatabase;
  private readonly announce: Announcer;
  private readonly claims: Claims;
  private readonly heartbeats: HeartbeatGroups;
  private readonly ends: AttemptEnds;

  constructor(db: PostgresDatabase, announce: Announcer) {
    this.db = db;
    this.announce = announce;
    this.claims = new Claims(db, announce);
    this.heartbeats = new HeartbeatGroups(db);
    this.ends = new AttemptEnds(db, announce);
  }

  async enqueue(job: NewJob, now: number): Promise<JobRecord> {
    const { spec, secrets } = storedSecrets(job);
    const params = [
      job.spec.queue,
      job.spec.repository ?? null,
      job.ref,
      job.commit,
      JSON.stringify(spec),
      job.spec.maxAttempts,
      job.spec.isolation,
      isolationRank(job.spec.isolation),
      now,
      this.announce.channel,
      this.announce.origin,
      networkRank(job.spec.network.mode),
    ];
    // The job and its sealed secrets in one statement (one transaction); most jobs have none.
    const rows =
      secrets.length === 0
        ? await this.db.query<JobRow>(`WITH ${INSERT_JOB} ${SELECT_INSERTED}`, params, "airlock_enqueue")
        : await this.db.query<JobRow>(
            `WITH ${INSERT_JOB}, sealed AS (
               INSERT INTO job_secrets (job_id, name, key_id, nonce, ciphertext)
               SELECT inserted.id, s.name, s.key_id, s.nonce, s.ciphertext FROM inserted, unnest($13::text[], $14::text[], $15::bytea[], $16::bytea[]) AS s (name, key_id, nonce, ciphertext)
             ) ${SELECT_INSERTED}`,
            [
              ...params,
              secrets.map((secret) => secret.name),
              secrets.map((secret) => secret.keyId),
              secrets.map((secret) => Buffer.from(secret.nonce)),
              secrets.map((secret) => Buffer.from(secret.ciphertext)),
            ],
            "airlock_enqueue_sealed",
          );
    const record = toJob(rows[0] as JobRow);
    this.announce.committed([{ kind: "queued", queue: record.queue, isolation: record.isolation, network: record.network }]);
    return record;
  }

  claim(request: ClaimRequest, now: number): Promise<JobRecord | undefined> {
    return this.claims.claim(request, now);
  }

  async heartbeat(executor: ExecutorIdentity, jobIds: number[], leaseMs: number, now: number, warmPool: WarmPoolReport | null = null): Promise<{ knownIds: number[]; cancelIds: number[] }> {
    const reply = await this.heartbeats.heartbeat(executor, jobIds, leaseMs, now, warmPool);
    this.claims.remember(executor.executorName, identityOf(executor), now);
    return reply;
  }

  async findAttempt(tokenHash: string): Promise<TokenLookup | undefined> {
    // Ending an attempt moves its token from the job row to the attempts table in one commit.
    const rows = await this.db.query<{ job_id: number; attempt: number; repository: string | null; executor_name: string; live: boolean }>(
      FIND_ATTEMPT,
      [tokenHash],
      "airlock_find_attempt",
    );
    const row = rows[0];
    if (!row) return undefined;
    return { jobId: row.job_id, attempt: row.attempt, repository: row.repository, executorName: row.executor_name, live: row.live };
  }

  async startEntry(ref: AttemptRef, key: string, now: number): Promise<{ entry: EntryRecord; queuedAt: number; queue: string }> {
    const result = await this.db.tx(async (client) => {
      const slot = await liveEntrySlot(client, ref, key);
      const { rows } = await client.query<EntryRow>(
        `INSERT INTO entries AS e (job_id, attempt, key, kind, idx, state, started_at) VALUES ($1, $2, $3, $4, $5, 'running', $6)
         ON CONFLICT (job_id, attempt, key) DO UPDATE SET state = 'running', started_at = coalesce(e.started_at, excluded.started_at)
         WHERE e.state IN ('pending', 'running') RETURNING *`,
        [ref.jobId, ref.attempt, key, slot.kind, slot.index, now],
      );
      const row = rows[0];
      if (!row) throw await this.entryProblem(client, ref, key);
      return { entry: toEntry(row), queuedAt: slot.queuedAt, queue: slot.queue };
    });
    this.announce.committed([{ kind: "job", jobId: ref.jobId }]);
    return result;
  }

  async finishEntry(ref: AttemptRef, key: string, result: EntryResult, now: number): Promise<EntryRecord> {
    const entry = await this.db.tx(async (client) => {
      const slot = await liveEntrySlot(client, ref, key);
      const { rows } = await client.query<EntryRow>(
        `INSERT INTO entries AS e (job_id, attempt, key, kind, idx, state, exit_code, duration_ms, message, started_at, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         ON CONFLICT (job_id, attempt, key) DO UPDATE SET state = excluded.state, exit_code = excluded.exit_code, duration_ms = excluded.duration_ms,
           message = excluded.message, finished_at = excluded.finished_at, started_at = coalesce(e.started_at, excluded.started_at)
         WHERE e.state IN ('pending', 'running') RETURNING *`,
        [ref.jobId, ref.attempt, key, slot.kind, slot.index, result.state, result.exitCode, result.durationMs, result.message ?? null, now],
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

  /** Why an entry that exists could not be started or finished: it already ended. */
  private async entryProblem(client: Queryable, ref: AttemptRef, key: string): Promise<Error> {
    const { rows } = await client.query<{ state: string }>("SELECT state FROM entries WHERE job_id = $1 AND attempt = $2 AND key = $3", [ref.jobId, ref.attempt, key]);
    return new ConflictError(`log entry "${key}" already ended (${rows[0]?.state ?? "unknown"})`);
  }

  async finishAttempt(ref: AttemptRef, outcome: AttemptOutcome, message: string | null, now: number): Promise<JobRecord> {
    return this.ends.finish(ref, outcome, message, now);
  }

  /** Moves a processing job out of its attempt: to a terminal state, or back to the queue. */
  private async endAttempt(client: Queryable, jobId: number, state: JobState, message: string | null, now: number): Promise<JobRecord> {
    const { rows } = await client.query<JobRow>(
      `UPDATE jobs SET state = $2::text, failure_message = $3, lease_expires_at = NULL,
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
        await client.query(
          `INSERT INTO attempts (job_id, attempt, executor_name, token_hash, started_at, finished_at, outcome, message)
           VALUES ($1, $2, $3, $4, $5, $6, 'errored', $7)`,
          [job.id, job.attempt, job.executorName, row.token_hash, job.startedAt, now, message.attempt],
        );
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
    const job = toJob(row.job);
    return {
      job,
      entries: currentEntries(job, row.entries.map(toEntry)),
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
      protocolVersion: row.protocol_version,
      runtime: row.runtime,
      isolation: row.isolation,
      queues: row.queues,
      firstSeenAt: row.first_seen_at,
      lastHeartbeatAt: row.last_heartbeat_at,
      runningJobIds: running.get(row.name) ?? [],
      warmPool: row.warm_pool,
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
function jobChanges(job: JobRecord): StoreChange[] {
  return job.state === "queued" ? [{ kind: "job", jobId: job.id }, { kind: "queued", queue: job.queue, isolation: job.isolation, network: job.network }] : [{ kind: "job", jobId: job.id }];
}
