/**
 * The hot statements of the Postgres job store, each one round trip and one transaction, run as
 * named prepared statements (parsed and planned once per connection). Plain statements rather
 * than PL/pgSQL functions: a function call costs about a third more server time per claim and
 * end of an attempt. Each comes in the variants its callers need, so that no execution sets up
 * a part it will not run (setting up each part of a plan costs about as much as running it).
 *
 * Claim (params: $1 queues text[], $2 max isolation rank, $3 executor, $4 token hash, $5 now,
 * $6 lease ms, $7 max network rank; recording also $8 hostname, $9 version, $10 runtime,
 * $11 isolation jsonb, $12 queues jsonb, $13 protocol version):
 * - `seen` (when recording) records the executor, unless it was recorded within the last second
 *   with the same identity (by any coordinator): an executor claiming in a tight loop costs at
 *   most a read per claim, not a row write. The store leaves it out altogether when it recorded
 *   the executor itself within the last second;
 * - `picked` locks one claimable job with FOR UPDATE SKIP LOCKED, so concurrent claimers on any
 *   coordinator never wait for each other and never get the same job. In queue order, the queues
 *   are tried in the given order: the nested loop over them stops at the first row (LIMIT 1),
 *   so only the job handed out is locked and a claimer of another queue is never made to skip a
 *   job nobody takes;
 * - the UPDATE starts the attempt on the job row; nothing else is written.
 */
const RECORD_EXECUTOR = `seen AS (
    INSERT INTO executors (name, hostname, version, runtime, isolation, queues, first_seen_at, last_heartbeat_at, protocol_version)
    SELECT $3::text, $8::text, $9::text, $10::text, $11::jsonb, $12::jsonb, $5::bigint, $5::bigint, $13::integer
    WHERE NOT EXISTS (SELECT 1 FROM executors WHERE name = $3 AND last_heartbeat_at >= $5 - 1000
      AND queues = $12 AND isolation = $11 AND runtime = $10 AND version = $9 AND hostname = $8 AND protocol_version = $13)
    ON CONFLICT (name) DO UPDATE SET hostname = excluded.hostname, version = excluded.version, runtime = excluded.runtime,
      protocol_version = excluded.protocol_version,
      isolation = excluded.isolation, queues = excluded.queues, last_heartbeat_at = excluded.last_heartbeat_at
  ), `;

const PICK_IN_ORDER = `picked AS (
    SELECT job.id FROM unnest($1::text[]) WITH ORDINALITY AS q (name, ord)
    CROSS JOIN LATERAL (
      SELECT id FROM jobs WHERE state = 'queued' AND queue = q.name AND isolation_rank <= $2::integer AND network_rank <= $7::integer
      ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
    ) job
    LIMIT 1
  )`;

const PICK_OLDEST = `picked AS (
    SELECT id FROM jobs WHERE state = 'queued' AND queue = ANY ($1::text[]) AND isolation_rank <= $2::integer AND network_rank <= $7::integer
    ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
  )`;

const START_ATTEMPT = `UPDATE jobs SET state = 'processing', attempt = attempt + 1, executor_name = $3::text, token_hash = $4::text,
    started_at = $5::bigint, finished_at = NULL, failure_message = NULL, lease_expires_at = $5 + $6::bigint
  FROM picked WHERE jobs.id = picked.id
  RETURNING jobs.*`;

/**
 * A claim: from the first of the queues, in the given order, that holds a job the executor can
 * take (`inOrder`), or the oldest such job across them; recording the executor or not.
 */
export function claimStatement(inOrder: boolean, record: boolean): { name: string; text: string } {
  return {
    name: `airlock_claim_${inOrder ? "in_order" : "oldest"}${record ? "_recording" : ""}`,
    text: `WITH ${record ? RECORD_EXECUTOR : ""}${inOrder ? PICK_IN_ORDER : PICK_OLDEST}
  ${START_ATTEMPT}`,
  };
}

/**
 * Claims of one queue arriving together (params: $1 queue, $2 max isolation rank, $3 executors
 * text[], $4 token hashes text[], $5 times bigint[], $6 lease ms bigint[], $7 how many, $8 max
 * network rank): locks up
 * to that many of the queue's oldest claimable jobs and starts the n-th oldest for the n-th
 * claim, as that many claims one after the other would. Rows carry `request`, the claim's
 * ordinal (1-based); a claim without a row got no job.
 */
export const CLAIM_GROUP = {
  name: "airlock_claim_group",
  text: `WITH requests AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[]) WITH ORDINALITY AS r (executor, token, at, lease, n)
  ), picked AS (
    SELECT id, row_number() OVER (ORDER BY queued_at, id) AS n FROM (
      SELECT id, queued_at FROM jobs WHERE state = 'queued' AND queue = $1::text AND isolation_rank <= $2::integer AND network_rank <= $8::integer
      ORDER BY queued_at, id LIMIT $7::integer FOR UPDATE SKIP LOCKED
    ) oldest
  )
  UPDATE jobs SET state = 'processing', attempt = attempt + 1, executor_name = r.executor, token_hash = r.token,
    started_at = r.at, finished_at = NULL, failure_message = NULL, lease_expires_at = r.at + r.lease
  FROM picked p JOIN requests r ON r.n = p.n
  WHERE jobs.id = p.id
  RETURNING jobs.*, r.n AS request`,
};

/**
 * Ends an attempt (params: $1 job, $2 attempt, $3 outcome, $4 message, $5 now, $6 channel,
 * $7 origin): to a terminal state, or back to the queue when an errored attempt has attempts
 * left; a requested cancel wins. Returns no row when the attempt is not live.
 * - `done`: one UPDATE decides and moves (SET expressions see the row as it was), so the row is
 *   written once; its WHERE is the fence. The job keeps the attempt's token (no longer live, as
 *   the job no longer processes it);
 * - `recorded` writes the attempt's row, where `findAttempt` finds the token from now on. A
 *   requeued job forgets its executor, so the record of an errored attempt takes it from `old`,
 *   the row as this statement's snapshot saw it: an attempt's executor never changes while the
 *   attempt is live, and `done` only succeeds while it is;
 * - a requeued job is announced in the same transaction (delivered at commit).
 */
function finishAttempt(mayRequeue: boolean): string {
  return `WITH ${mayRequeue ? "old AS (SELECT executor_name FROM jobs WHERE id = $1), " : ""}done AS (
    UPDATE jobs SET
      state = CASE WHEN cancel_requested THEN 'canceled' WHEN $3::text = 'errored' AND attempt < max_attempts THEN 'queued' ELSE $3 END,
      failure_message = CASE WHEN cancel_requested THEN coalesce($4, 'canceled') ELSE $4 END,
      lease_expires_at = NULL,
      finished_at = CASE WHEN NOT cancel_requested AND $3 = 'errored' AND attempt < max_attempts THEN NULL ELSE $5::bigint END,
      queued_at = CASE WHEN NOT cancel_requested AND $3 = 'errored' AND attempt < max_attempts THEN $5::bigint ELSE queued_at END,
      executor_name = CASE WHEN NOT cancel_requested AND $3 = 'errored' AND attempt < max_attempts THEN NULL ELSE executor_name END
    WHERE id = $1 AND attempt = $2 AND state = 'processing'
    RETURNING *
  ), recorded AS (
    INSERT INTO attempts (token_hash, job_id, attempt, executor_name, started_at, finished_at, outcome, message)
    SELECT token_hash, id, attempt, ${mayRequeue ? "coalesce(executor_name, (SELECT executor_name FROM old))" : "executor_name"}, started_at, $5, $3, $4 FROM done
  )
  SELECT done.*, CASE WHEN done.state = 'queued' THEN pg_notify($6, json_build_object('o', $7::text, 'q', done.queue, 'i', done.isolation, 'n', done.network_rank)::text) END AS notified
  FROM done`;
}

/** Ends an attempt with the given outcome (only an errored one may requeue the job). */
export function finishStatement(outcome: string): { name: string; text: string } {
  return outcome === "errored" ? FINISH_ERRORED : FINISH_OTHER;
}

const FINISH_ERRORED = { name: "airlock_finish_errored", text: finishAttempt(true) };
const FINISH_OTHER = { name: "airlock_finish", text: finishAttempt(false) };

/**
 * Ends the attempts of a group (params: $1 jobs bigint[], $2 attempts integer[], $3 outcomes
 * text[], $4 messages text[], $5 times bigint[], $6 channel, $7 origin; one job at most once),
 * each exactly as `finishStatement` would; returns the rows of those that were live.
 */
export const FINISH_GROUP = {
  name: "airlock_finish_group",
  text: `WITH ends AS (
    SELECT * FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::text[], $5::bigint[]) AS e (job, attempt, outcome, message, at)
  ), old AS (
    SELECT j.id, j.executor_name FROM jobs j JOIN ends e ON j.id = e.job WHERE e.outcome = 'errored'
  ), done AS (
    UPDATE jobs j SET
      state = CASE WHEN j.cancel_requested THEN 'canceled' WHEN e.outcome = 'errored' AND j.attempt < j.max_attempts THEN 'queued' ELSE e.outcome END,
      failure_message = CASE WHEN j.cancel_requested THEN coalesce(e.message, 'canceled') ELSE e.message END,
      lease_expires_at = NULL,
      finished_at = CASE WHEN NOT j.cancel_requested AND e.outcome = 'errored' AND j.attempt < j.max_attempts THEN NULL ELSE e.at END,
      queued_at = CASE WHEN NOT j.cancel_requested AND e.outcome = 'errored' AND j.attempt < j.max_attempts THEN e.at ELSE j.queued_at END,
      executor_name = CASE WHEN NOT j.cancel_requested AND e.outcome = 'errored' AND j.attempt < j.max_attempts THEN NULL ELSE j.executor_name END
    FROM ends e
    WHERE j.id = e.job AND j.attempt = e.attempt AND j.state = 'processing'
    RETURNING j.*, e.outcome AS ended_outcome, e.message AS ended_message, e.at AS ended_at
  ), recorded AS (
    INSERT INTO attempts (token_hash, job_id, attempt, executor_name, started_at, finished_at, outcome, message)
    SELECT d.token_hash, d.id, d.attempt, coalesce(d.executor_name, o.executor_name), d.started_at, d.ended_at, d.ended_outcome, d.ended_message
    FROM done d LEFT JOIN old o ON o.id = d.id
  )
  SELECT done.*, CASE WHEN done.state = 'queued' THEN pg_notify($6, json_build_object('o', $7::text, 'q', done.queue, 'i', done.isolation, 'n', done.network_rank)::text) END AS notified
  FROM done`,
};

/** A job token's attempt: live on its processing job's row, or ended in the attempts table (one snapshot for both). */
export const FIND_ATTEMPT = `(SELECT id AS job_id, attempt, repository, executor_name, true AS live FROM jobs WHERE token_hash = $1 AND state = 'processing')
  UNION ALL
  (SELECT a.job_id, a.attempt, j.repository, a.executor_name, false FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE a.token_hash = $1)
  LIMIT 1`;
