/**
 * Postgres schema, one entry per version, applied in order by `PostgresDatabase.migrate()`.
 * Never edit a released migration; add a new one.
 *
 * Tables and columns match the SQLite backend's. The hot paths are each one round trip and one
 * transaction: claiming and ending an attempt are single statements (job-store.ts), appending
 * log bytes is a function, `airlock_append_log` (fence, append at an offset).
 * Changes are announced with pg_notify on channel `airlock_changes`, payload JSON with the origin
 * process "o": a claimable job ({"q": queue, "i": isolation}) is announced inside the transaction
 * that made it claimable (delivered at commit, never lost); other changes of jobs ({"j": [ids]})
 * are sent after commit in batches by the process (see notifier.ts), since every notifying commit
 * takes a database-wide lock.
 */
import { NOTIFY_CHANNEL, POSTGRES_INITIAL_SCHEMA } from "./initial-schema.ts";

export { NOTIFY_CHANNEL };

export const POSTGRES_MIGRATIONS: readonly string[] = [
  /* 1: initial schema */ POSTGRES_INITIAL_SCHEMA,
  /* 2: fewer rows and statements per claim and end of an attempt */ `
  -- The live attempt (its token and executor) is on the job row only; its attempts row is written
  -- once, when it ends, and is only ever looked up by token. A job keeps its latest token after
  -- the attempt ended: only a processing job's token is live, and only those are in the index.
  DELETE FROM attempts a USING jobs j WHERE a.job_id = j.id AND a.attempt = j.attempt AND j.state = 'processing';
  -- No foreign key: checking it would lock (so write) the job row the same transaction just updated.
  ALTER TABLE attempts DROP CONSTRAINT attempts_job_id_fkey, DROP CONSTRAINT attempts_pkey,
    DROP CONSTRAINT attempts_token_hash_key, ADD PRIMARY KEY (token_hash);
  -- Also the processing jobs' index (reaper, executor lists): one index written per claim, not two.
  DROP INDEX jobs_processing;
  CREATE UNIQUE INDEX jobs_live_token ON jobs (token_hash) WHERE state = 'processing';
  -- Only jobs naming a repository are listed by it: others need no entry (each claim and end of
  -- an attempt writes one into every index of the row).
  DROP INDEX jobs_by_repository;
  CREATE INDEX jobs_by_repository ON jobs (repository, id) WHERE repository IS NOT NULL;
  -- A CHECK constraint is parsed again by every statement writing the row (claims, ends of
  -- attempts, heartbeats); a domain's is kept ready. Added after the column changed type, so the
  -- table is only read through, not rewritten.
  CREATE DOMAIN job_state AS text;
  ALTER TABLE jobs DROP CONSTRAINT jobs_state_check, ALTER COLUMN state TYPE job_state;
  ALTER DOMAIN job_state ADD CONSTRAINT job_state_check CHECK (VALUE IN ('queued', 'processing', 'completed', 'failed', 'errored', 'canceled'));
  -- Heartbeats rewrite executor rows all the time: leave room on each page for HOT updates.
  ALTER TABLE executors SET (fillfactor = 50);
  -- Claiming and ending an attempt are single statements now (job-store.ts): cheaper than a call.
  DROP FUNCTION airlock_claim(text[], boolean, integer, text, text, text, text, jsonb, jsonb, text, bigint, bigint);
  DROP FUNCTION airlock_finish_attempt(bigint, integer, text, text, bigint, text);
  `,
  /* 3: jobs ask for a network (0 none, 1 internet); jobs from before asked for none */ `
  ALTER TABLE jobs ADD COLUMN network_rank smallint NOT NULL DEFAULT 0;
  `,
  /* 4: batches, their versions and entries (as in the SQLite schema) */ `
  CREATE TABLE batches (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    description text NOT NULL,
    latest_version integer NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
  );
  CREATE TABLE batch_versions (
    batch_id bigint NOT NULL REFERENCES batches (id),
    version integer NOT NULL,
    spec json NOT NULL,
    spec_text text NOT NULL,
    source text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (batch_id, version)
  );
  CREATE TABLE batch_entries (
    id bigserial PRIMARY KEY,
    batch_id bigint NOT NULL,
    version integer NOT NULL,
    repository text NOT NULL,
    workspace text NOT NULL,
    branch text NOT NULL,
    commit_sha text NOT NULL,
    job_id bigint,
    cached_from bigint,
    state text NOT NULL,
    diff_files integer,
    diff_added integer,
    diff_deleted integer,
    cache_key text NOT NULL,
    failure_message text,
    apply_state text,
    apply_branch text,
    apply_sha text,
    apply_message text,
    applied_at bigint,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    FOREIGN KEY (batch_id, version) REFERENCES batch_versions (batch_id, version)
  );
  CREATE INDEX batch_entries_by_version ON batch_entries (batch_id, version, repository, workspace);
  CREATE INDEX batch_entries_by_cache_key ON batch_entries (cache_key, id) WHERE state = 'completed' AND cached_from IS NULL;
  CREATE TABLE batch_entry_blobs (
    entry_id bigint NOT NULL REFERENCES batch_entries (id),
    name text NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (entry_id, name)
  );
  `,
  /* 5: code indexes (as in the SQLite schema) */ `
  CREATE TABLE code_indexes (
    id bigserial PRIMARY KEY,
    repository text NOT NULL,
    commit_sha text NOT NULL,
    root text NOT NULL,
    indexer text NOT NULL,
    indexer_version text NOT NULL,
    job_id bigint NOT NULL,
    artifact text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'completed', 'failed')),
    documents bigint,
    symbols bigint,
    occurrences bigint,
    size bigint,
    failure_message text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
  );
  CREATE INDEX code_indexes_by_key ON code_indexes (repository, commit_sha, root, indexer, indexer_version, id);
  `,
  /* 6: job secrets sealed in a table of their own, gone when the job ends (as in the SQLite schema) */ `
  CREATE TABLE job_secrets (
    job_id bigint NOT NULL REFERENCES jobs (id),
    name text NOT NULL,
    key_id text NOT NULL,
    nonce bytea NOT NULL,
    ciphertext bytea NOT NULL,
    PRIMARY KEY (job_id, name)
  );
  -- Every path that ends a job (an attempt's end, grouped or not, a lapsed lease, a cancel)
  -- updates its state: the secrets go in that same transaction.
  CREATE FUNCTION airlock_job_secrets_end() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    DELETE FROM job_secrets WHERE job_id = NEW.id;
    RETURN NULL;
  END
  $$;
  CREATE TRIGGER job_secrets_end AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state IN ('completed', 'failed', 'errored', 'canceled') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION airlock_job_secrets_end();
  -- Specs stored before held their values: those of unfinished jobs move here (unsealed, until
  -- \`airlock server rotate-secrets-key\` seals them), and every spec keeps only the names.
  INSERT INTO job_secrets (job_id, name, key_id, nonce, ciphertext)
    SELECT j.id, 'secrets.' || s.key, 'plaintext', '\\x'::bytea, convert_to(s.value, 'UTF8')
    FROM jobs j, json_each_text(j.spec -> 'secrets') s WHERE j.state IN ('queued', 'processing');
  INSERT INTO job_secrets (job_id, name, key_id, nonce, ciphertext)
    SELECT j.id, 'registryAuth.' || r.key, 'plaintext', '\\x'::bytea, convert_to(r.value ->> 'password', 'UTF8')
    FROM jobs j, json_each(j.spec -> 'registryAuth') r WHERE j.state IN ('queued', 'processing') AND json_typeof(j.spec -> 'registryAuth') = 'object';
  UPDATE jobs SET spec = jsonb_set(spec::jsonb, '{secrets}', (SELECT jsonb_object_agg(key, '********') FROM json_each(jobs.spec -> 'secrets')))::json
    WHERE json_typeof(spec -> 'secrets') = 'object' AND spec::jsonb -> 'secrets' <> '{}'::jsonb;
  UPDATE jobs SET spec = jsonb_set(spec::jsonb, '{registryAuth}', (SELECT jsonb_object_agg(key, jsonb_set(value::jsonb, '{password}', '"********"')) FROM json_each(jobs.spec -> 'registryAuth')))::json
    WHERE json_typeof(spec -> 'registryAuth') = 'object' AND spec::jsonb -> 'registryAuth' <> '{}'::jsonb;
  `,
  /* 7: indexing policies per repository (as in the SQLite schema) */ `
  CREATE TABLE index_policies (
    repository text PRIMARY KEY,
    auto_index boolean NOT NULL DEFAULT false,
    config text,
    seen_head text,
    updated_at bigint NOT NULL
  );
  `,
  /* 8: an executor's warm microVM pool, as of its last heartbeat */ `
  ALTER TABLE executors ADD COLUMN warm_pool jsonb;
  `,
  /* 9: batch versions' secret values sealed apart from their spec and its text (as in the SQLite schema) */ `
  CREATE TABLE batch_secrets (
    batch_id bigint NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    key_id text NOT NULL,
    nonce bytea NOT NULL,
    ciphertext bytea NOT NULL,
    PRIMARY KEY (batch_id, version, name),
    FOREIGN KEY (batch_id, version) REFERENCES batch_versions (batch_id, version)
  );
  INSERT INTO batch_secrets (batch_id, version, name, key_id, nonce, ciphertext)
    SELECT v.batch_id, v.version, 'secrets.' || s.key, 'plaintext', '\\x'::bytea, convert_to(s.value, 'UTF8')
    FROM batch_versions v, json_each_text(v.spec -> 'job' -> 'secrets') s WHERE json_typeof(v.spec -> 'job' -> 'secrets') = 'object';
  DO $$
  DECLARE
    found record;
  BEGIN
    FOR found IN
      SELECT v.batch_id, v.version, s.value FROM batch_versions v, json_each_text(v.spec -> 'job' -> 'secrets') s
      WHERE json_typeof(v.spec -> 'job' -> 'secrets') = 'object' ORDER BY length(s.value) DESC
    LOOP
      UPDATE batch_versions SET spec_text = replace(spec_text, found.value, '********') WHERE batch_id = found.batch_id AND version = found.version;
    END LOOP;
  END
  $$;
  UPDATE batch_versions SET spec = jsonb_set(spec::jsonb, '{job,secrets}', (SELECT jsonb_object_agg(key, '********') FROM json_each(batch_versions.spec -> 'job' -> 'secrets')))::json
    WHERE json_typeof(spec -> 'job' -> 'secrets') = 'object' AND (spec -> 'job' -> 'secrets')::jsonb <> '{}'::jsonb;
  `,
  /* 10: the executor protocol each executor speaks (as in the SQLite schema) */ `
  ALTER TABLE executors ADD COLUMN protocol_version integer NOT NULL DEFAULT 1;
  `,
];
