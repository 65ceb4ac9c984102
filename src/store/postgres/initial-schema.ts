/** Postgres migration 1: the initial schema (migrations.ts lists it first; never edit it). */
/** The channel every change is announced on (see migrations.ts). */
export const NOTIFY_CHANNEL = "airlock_changes";

export const POSTGRES_INITIAL_SCHEMA = `
  CREATE TABLE repositories (
    name text PRIMARY KEY,
    source text NOT NULL,
    created_at bigint NOT NULL
  );

  CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    queue text NOT NULL,
    repository text,
    ref text,
    commit_sha text,
    -- json, not jsonb: stored and returned verbatim, never queried into but for the step keys.
    spec json NOT NULL,
    state text NOT NULL CHECK (state IN ('queued','processing','completed','failed','errored','canceled')),
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    isolation text NOT NULL,
    isolation_rank integer NOT NULL,
    executor_name text,
    failure_message text,
    cancel_requested boolean NOT NULL DEFAULT false,
    token_hash text,
    created_at bigint NOT NULL,
    queued_at bigint NOT NULL,
    started_at bigint,
    finished_at bigint,
    lease_expires_at bigint
  ) WITH (fillfactor = 80);
  -- Few indexes on purpose: every claim and end of an attempt rewrites the row, and each index
  -- is one more write then. Queued and processing jobs have small partial indexes (dequeue;
  -- reaper, executor lists); listing by a state walks the primary key newest first. Heartbeats
  -- go by id, so a lease extension touches no index (a HOT update).
  CREATE INDEX jobs_dequeue ON jobs (queue, queued_at, id) WHERE state = 'queued';
  CREATE INDEX jobs_processing ON jobs (id) WHERE state = 'processing';
  CREATE INDEX jobs_by_repository ON jobs (repository, id);

  CREATE TABLE attempts (
    job_id bigint NOT NULL REFERENCES jobs (id),
    attempt integer NOT NULL,
    executor_name text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    started_at bigint NOT NULL,
    finished_at bigint,
    outcome text,
    message text,
    PRIMARY KEY (job_id, attempt)
  );

  CREATE TABLE entries (
    job_id bigint NOT NULL REFERENCES jobs (id),
    attempt integer NOT NULL,
    key text NOT NULL,
    kind text NOT NULL,
    idx integer NOT NULL,
    state text NOT NULL,
    exit_code integer,
    duration_ms bigint,
    started_at bigint,
    finished_at bigint,
    size bigint NOT NULL DEFAULT 0,
    message text,
    PRIMARY KEY (job_id, attempt, key)
  ) WITH (fillfactor = 80);

  CREATE TABLE log_chunks (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    key text NOT NULL,
    start_offset bigint NOT NULL,
    end_offset bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (job_id, attempt, key, start_offset)
  );

  CREATE TABLE artifacts (
    job_id bigint NOT NULL REFERENCES jobs (id),
    attempt integer NOT NULL,
    name text NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (job_id, attempt, name)
  );

  CREATE TABLE artifact_chunks (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    name text NOT NULL,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (job_id, attempt, name, seq)
  );

  CREATE TABLE executors (
    name text PRIMARY KEY,
    hostname text NOT NULL,
    version text NOT NULL,
    runtime text NOT NULL,
    isolation jsonb NOT NULL,
    queues jsonb NOT NULL,
    first_seen_at bigint NOT NULL,
    last_heartbeat_at bigint NOT NULL
  );

  -- Claims one job for an executor (announced by the caller, batched). With p_ordered, queues are tried in the given order and the
  -- first that has a claimable job wins; else the oldest across them all. Only the row handed out
  -- is locked (FOR UPDATE SKIP LOCKED stops at the first row it locks), so a claimer of another
  -- queue is never made to skip a job nobody takes.
  CREATE FUNCTION airlock_claim(
    p_queues text[], p_ordered boolean, p_max_rank integer,
    p_executor text, p_hostname text, p_version text, p_runtime text, p_isolation jsonb, p_executor_queues jsonb,
    p_token text, p_now bigint, p_lease_ms bigint
  ) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
  DECLARE
    v_id bigint;
    v_queue text;
    v_job jobs;
  BEGIN
    -- An executor claiming in a tight loop is recorded at most once a second: the check is a
    -- plain read, where an upsert would lock (and so write) the executor's row on every claim.
    -- Heartbeats always record.
    IF NOT EXISTS (SELECT 1 FROM executors WHERE name = p_executor AND last_heartbeat_at >= p_now - 1000
        AND queues = p_executor_queues AND isolation = p_isolation AND runtime = p_runtime AND version = p_version AND hostname = p_hostname) THEN
      INSERT INTO executors (name, hostname, version, runtime, isolation, queues, first_seen_at, last_heartbeat_at)
      VALUES (p_executor, p_hostname, p_version, p_runtime, p_isolation, p_executor_queues, p_now, p_now)
      ON CONFLICT (name) DO UPDATE SET hostname = excluded.hostname, version = excluded.version, runtime = excluded.runtime,
        isolation = excluded.isolation, queues = excluded.queues, last_heartbeat_at = excluded.last_heartbeat_at;
    END IF;
    IF p_ordered THEN
      FOREACH v_queue IN ARRAY p_queues LOOP
        SELECT id INTO v_id FROM jobs
          WHERE state = 'queued' AND queue = v_queue AND isolation_rank <= p_max_rank
          ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED;
        EXIT WHEN v_id IS NOT NULL;
      END LOOP;
    ELSE
      SELECT id INTO v_id FROM jobs
        WHERE state = 'queued' AND queue = ANY (p_queues) AND isolation_rank <= p_max_rank
        ORDER BY queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED;
    END IF;
    IF v_id IS NULL THEN
      RETURN;
    END IF;
    UPDATE jobs SET state = 'processing', attempt = attempt + 1, executor_name = p_executor, token_hash = p_token,
      started_at = p_now, finished_at = NULL, failure_message = NULL, lease_expires_at = p_now + p_lease_ms
    WHERE id = v_id RETURNING * INTO v_job;
    INSERT INTO attempts (job_id, attempt, executor_name, token_hash, started_at)
    VALUES (v_job.id, v_job.attempt, p_executor, p_token, p_now);
    INSERT INTO entries (job_id, attempt, key, kind, idx, state)
    SELECT v_job.id, v_job.attempt, 'prepare', 'prepare', 0, 'pending'
    UNION ALL
    SELECT v_job.id, v_job.attempt, step.value ->> 'key', 'step', step.ordinality::integer, 'pending'
    FROM json_array_elements(v_job.spec -> 'steps') WITH ORDINALITY AS step;
    RETURN NEXT v_job;
  END $$;

  -- Ends an attempt: to a terminal state, or back to the queue when an errored attempt has
  -- attempts left; a requested cancel wins. Returns nothing when the attempt is not live.
  CREATE FUNCTION airlock_finish_attempt(
    p_job bigint, p_attempt integer, p_outcome text, p_message text, p_now bigint, p_origin text
  ) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
  DECLARE
    v_job jobs;
    v_state text;
  BEGIN
    -- One UPDATE decides and moves (SET expressions see the row as it was), so the row is
    -- written once; the WHERE is the fence.
    UPDATE jobs SET
      state = CASE WHEN cancel_requested THEN 'canceled' WHEN p_outcome = 'errored' AND attempt < max_attempts THEN 'queued' ELSE p_outcome END,
      failure_message = CASE WHEN cancel_requested THEN coalesce(p_message, 'canceled') ELSE p_message END,
      token_hash = NULL, lease_expires_at = NULL,
      finished_at = CASE WHEN NOT cancel_requested AND p_outcome = 'errored' AND attempt < max_attempts THEN NULL ELSE p_now END,
      queued_at = CASE WHEN NOT cancel_requested AND p_outcome = 'errored' AND attempt < max_attempts THEN p_now ELSE queued_at END,
      executor_name = CASE WHEN NOT cancel_requested AND p_outcome = 'errored' AND attempt < max_attempts THEN NULL ELSE executor_name END
    WHERE id = p_job AND attempt = p_attempt AND state = 'processing'
    RETURNING * INTO v_job;
    IF NOT FOUND THEN
      RETURN;
    END IF;
    v_state := v_job.state;
    UPDATE attempts SET finished_at = p_now, outcome = p_outcome, message = p_message WHERE job_id = p_job AND attempt = p_attempt;
    UPDATE entries SET state = 'skipped' WHERE job_id = p_job AND attempt = p_attempt AND state = 'pending';
    IF v_state = 'queued' THEN
      PERFORM pg_notify('${NOTIFY_CHANNEL}', json_build_object('o', p_origin, 'q', v_job.queue, 'i', v_job.isolation)::text);
    END IF;
    RETURN NEXT v_job;
  END $$;

  -- Appends log bytes at an offset for a live attempt (announced by the caller, batched). The job
  -- row is share-locked, so a reap or an end of the attempt waits for the append (and fences
  -- every append after it); the entry row is locked, so appends to one entry apply in turn.
  CREATE FUNCTION airlock_append_log(
    p_job bigint, p_attempt integer, p_key text, p_offset bigint, p_data bytea,
    OUT status text, OUT size bigint, OUT cancel boolean
  ) LANGUAGE plpgsql AS $$
  DECLARE
    v_fresh bytea;
  BEGIN
    SELECT cancel_requested INTO cancel FROM jobs WHERE id = p_job AND attempt = p_attempt AND state = 'processing' FOR SHARE;
    IF NOT FOUND THEN
      status := 'lease_lost';
      RETURN;
    END IF;
    SELECT e.size INTO size FROM entries e WHERE e.job_id = p_job AND e.attempt = p_attempt AND e.key = p_key FOR UPDATE;
    IF NOT FOUND THEN
      status := 'no_entry';
      RETURN;
    END IF;
    IF p_offset > size THEN
      status := 'gap';
      RETURN;
    END IF;
    status := 'ok';
    IF size - p_offset >= length(p_data) THEN
      RETURN;
    END IF;
    v_fresh := substring(p_data FROM (size - p_offset + 1)::integer);
    INSERT INTO log_chunks (job_id, attempt, key, start_offset, end_offset, data)
    VALUES (p_job, p_attempt, p_key, size, size + length(v_fresh), v_fresh);
    UPDATE entries e SET size = e.size + length(v_fresh) WHERE e.job_id = p_job AND e.attempt = p_attempt AND e.key = p_key;
    size := size + length(v_fresh);
  END $$;
  `;
