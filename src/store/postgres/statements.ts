/**
 * The hot statements of the Postgres job store, each one round trip and one transaction, run as
 * named prepared statements (parsed and planned once per connection). Plain statements rather
 * than PL/pgSQL functions: a function call costs about a third more server time per claim and
 * end of an attempt.
 *
 * Claim (params: $1 queues text[], $2 max isolation rank, $3 executor, $4 hostname, $5 version,
 * $6 runtime, $7 isolation jsonb, $8 queues jsonb, $9 token hash, $10 now, $11 lease ms):
 * - `seen` records the executor, unless it was recorded within the last second with the same
 *   identity: an executor claiming in a tight loop costs a read, not a row write, per claim
 *   (heartbeats always record);
 * - `picked` locks one claimable job with FOR UPDATE SKIP LOCKED, so concurrent claimers on any
 *   coordinator never wait for each other and never get the same job. In queue order, the queues
 *   are tried in the given order: the nested loop over them stops at the first row (LIMIT 1),
 *   so only the job handed out is locked and a claimer of another queue is never made to skip a
 *   job nobody takes;
 * - the UPDATE starts the attempt on the job row; nothing else is written.
 */
const RECORD_EXECUTOR = `seen AS (
    INSERT INTO executors (name, hostname, version, runtime, isolation, queues, first_seen_at, last_heartbeat_at)
    SELECT $3::text, $4::text, $5::text, $6::text, $7::jsonb, $8::jsonb, $10::bigint, $10::bigint
    WHERE NOT EXISTS (SELECT 1 FROM executors WHERE name = $3 AND last_heartbeat_at >= $10 - 1000
      AND queues = $8 AND isolation = $7 AND runtime = $6 AND version = $5 AND hostname = $4)
    ON CONFLICT (name) DO UPDATE SET hostname = excluded.hostname, version = excluded.version, runtime = excluded.runtime,
      isolation = excluded.isolation, queues = excluded.queues, last_heartbeat_at = excluded.last_heartbeat_at
  )`;

const START_ATTEMPT = `UPDATE jobs SET state = 'processing', attempt = attempt + 1, executor_name = $3, token_hash = $9::text,
    started_at = $10, finished_at = NULL, failure_message = NULL, lease_expires_at = $10 + $11::bigint
  FROM picked WHERE jobs.id = picked.id
  RETURNING jobs.*`;

/** Claims from the first of the queues, in the given order, that holds a job the executor can take. */
export const CLAIM_IN_ORDER = `WITH ${RECORD_EXECUTOR}, picked AS (
    SELECT job.id FROM unnest($1::text[]) WITH ORDINALITY AS q (name, ord)
    CROSS JOIN LATERAL (
      SELECT id FROM jobs WHERE state = 'queued' AND queue = q.name AND isolation_rank <= $2::integer
      ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
    ) job
    LIMIT 1
  )
  ${START_ATTEMPT}`;

/** Claims the oldest job across the queues that the executor can take. */
export const CLAIM_OLDEST = `WITH ${RECORD_EXECUTOR}, picked AS (
    SELECT id FROM jobs WHERE state = 'queued' AND queue = ANY ($1::text[]) AND isolation_rank <= $2::integer
    ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
  )
  ${START_ATTEMPT}`;

/**
 * Ends an attempt (params: $1 job, $2 attempt, $3 outcome, $4 message, $5 now, $6 channel,
 * $7 origin): to a terminal state, or back to the queue when an errored attempt has attempts
 * left; a requested cancel wins. Returns no row when the attempt is not live.
 * - `done`: one UPDATE decides and moves (SET expressions see the row as it was), so the row is
 *   written once; its WHERE is the fence. The job keeps the attempt's token (no longer live, as
 *   the job no longer processes it);
 * - `recorded` writes the attempt's row, where `findAttempt` finds the token from now on. A
 *   requeued job forgets its executor, so the record takes it from `old`, the row as this
 *   statement's snapshot saw it: an attempt's executor never changes while the attempt is live,
 *   and `done` only succeeds while it is;
 * - a requeued job is announced in the same transaction (delivered at commit).
 */
export const FINISH_ATTEMPT = `WITH old AS (
    SELECT executor_name FROM jobs WHERE id = $1 AND $3::text = 'errored'
  ), done AS (
    UPDATE jobs SET
      state = CASE WHEN cancel_requested THEN 'canceled' WHEN $3 = 'errored' AND attempt < max_attempts THEN 'queued' ELSE $3 END,
      failure_message = CASE WHEN cancel_requested THEN coalesce($4, 'canceled') ELSE $4 END,
      lease_expires_at = NULL,
      finished_at = CASE WHEN NOT cancel_requested AND $3 = 'errored' AND attempt < max_attempts THEN NULL ELSE $5::bigint END,
      queued_at = CASE WHEN NOT cancel_requested AND $3 = 'errored' AND attempt < max_attempts THEN $5::bigint ELSE queued_at END,
      executor_name = CASE WHEN NOT cancel_requested AND $3 = 'errored' AND attempt < max_attempts THEN NULL ELSE executor_name END
    WHERE id = $1 AND attempt = $2 AND state = 'processing'
    RETURNING *
  ), recorded AS (
    INSERT INTO attempts (token_hash, job_id, attempt, executor_name, started_at, finished_at, outcome, message)
    SELECT token_hash, id, attempt, coalesce(executor_name, (SELECT executor_name FROM old)), started_at, $5, $3, $4 FROM done
  )
  SELECT done.*, CASE WHEN done.state = 'queued' THEN pg_notify($6, json_build_object('o', $7::text, 'q', done.queue, 'i', done.isolation)::text) END AS notified
  FROM done`;

/** A job token's attempt: live on its processing job's row, or ended in the attempts table (one snapshot for both). */
export const FIND_ATTEMPT = `(SELECT id AS job_id, attempt, repository, executor_name, true AS live FROM jobs WHERE token_hash = $1 AND state = 'processing')
  UNION ALL
  (SELECT a.job_id, a.attempt, j.repository, a.executor_name, false FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE a.token_hash = $1)
  LIMIT 1`;
