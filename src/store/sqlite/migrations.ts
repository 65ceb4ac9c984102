/**
 * SQLite schema, one entry per version. Applied in order inside a transaction by `migrate()`;
 * never edit a released migration, add a new one.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  /* 1: initial schema */ `
  CREATE TABLE repositories (
    name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL
  );

  CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    repository TEXT,
    ref TEXT,
    commit_sha TEXT,
    spec TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued','processing','completed','failed','errored','canceled')),
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    isolation TEXT NOT NULL,
    isolation_rank INTEGER NOT NULL,
    executor_name TEXT,
    failure_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    token_hash TEXT,
    created_at INTEGER NOT NULL,
    queued_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    lease_expires_at INTEGER
  );
  CREATE INDEX jobs_dequeue ON jobs (queue, queued_at, id) WHERE state = 'queued';
  CREATE INDEX jobs_by_state ON jobs (state, id);
  CREATE INDEX jobs_by_repository ON jobs (repository, id);
  CREATE INDEX jobs_by_executor ON jobs (executor_name) WHERE state = 'processing';
  CREATE INDEX jobs_by_lease ON jobs (lease_expires_at) WHERE state = 'processing';
  CREATE UNIQUE INDEX jobs_by_token ON jobs (token_hash) WHERE token_hash IS NOT NULL;

  CREATE TABLE attempts (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    attempt INTEGER NOT NULL,
    executor_name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    outcome TEXT,
    message TEXT,
    PRIMARY KEY (job_id, attempt)
  );

  CREATE TABLE entries (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    attempt INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    exit_code INTEGER,
    duration_ms INTEGER,
    started_at INTEGER,
    finished_at INTEGER,
    size INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    PRIMARY KEY (job_id, attempt, key)
  );

  CREATE TABLE log_chunks (
    job_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    key TEXT NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, attempt, key, start_offset)
  );

  CREATE TABLE artifacts (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    attempt INTEGER NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt, name)
  );

  CREATE TABLE artifact_chunks (
    job_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, attempt, name, seq)
  );

  CREATE TABLE executors (
    name TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    version TEXT NOT NULL,
    runtime TEXT NOT NULL,
    isolation TEXT NOT NULL,
    queues TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL
  );
  `,
  /* 2: fewer rows written per claim and end of an attempt (as in the Postgres schema) */ `
  -- The live attempt is on the job row only; its attempts row is written once, when it ends, and
  -- is only ever looked up by token. A job keeps its latest token after the attempt ended: only a
  -- processing job's token is live.
  CREATE TABLE attempts_by_token (
    token_hash TEXT PRIMARY KEY,
    job_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    executor_name TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    outcome TEXT,
    message TEXT
  );
  INSERT INTO attempts_by_token (token_hash, job_id, attempt, executor_name, started_at, finished_at, outcome, message)
    SELECT token_hash, job_id, attempt, executor_name, started_at, finished_at, outcome, message FROM attempts a
    WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = a.job_id AND j.attempt = a.attempt AND j.state = 'processing');
  DROP TABLE attempts;
  ALTER TABLE attempts_by_token RENAME TO attempts;
  DROP INDEX jobs_by_token;
  CREATE UNIQUE INDEX jobs_live_token ON jobs (token_hash) WHERE state = 'processing';
  `,
  /* 3: jobs ask for a network (0 none, 1 internet); jobs from before asked for none */ `
  ALTER TABLE jobs ADD COLUMN network_rank INTEGER NOT NULL DEFAULT 0;
  `,
  /* 4: batches, their versions and entries */ `
  CREATE TABLE batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    latest_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE batch_versions (
    batch_id INTEGER NOT NULL REFERENCES batches (id),
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    spec_text TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (batch_id, version)
  );
  CREATE TABLE batch_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    repository TEXT NOT NULL,
    workspace TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    job_id INTEGER,
    cached_from INTEGER,
    state TEXT NOT NULL,
    diff_files INTEGER,
    diff_added INTEGER,
    diff_deleted INTEGER,
    cache_key TEXT NOT NULL,
    failure_message TEXT,
    apply_state TEXT,
    apply_branch TEXT,
    apply_sha TEXT,
    apply_message TEXT,
    applied_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    FOREIGN KEY (batch_id, version) REFERENCES batch_versions (batch_id, version)
  );
  CREATE INDEX batch_entries_by_version ON batch_entries (batch_id, version, repository, workspace);
  CREATE INDEX batch_entries_by_cache_key ON batch_entries (cache_key, id) WHERE state = 'completed' AND cached_from IS NULL;
  CREATE TABLE batch_entry_blobs (
    entry_id INTEGER NOT NULL REFERENCES batch_entries (id),
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (entry_id, name)
  );
  `,
  /* 5: code indexes (docs/indexing.md) */ `
  CREATE TABLE code_indexes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repository TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    root TEXT NOT NULL,
    indexer TEXT NOT NULL,
    indexer_version TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    artifact TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'failed')),
    documents INTEGER,
    symbols INTEGER,
    occurrences INTEGER,
    size INTEGER,
    failure_message TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX code_indexes_by_key ON code_indexes (repository, commit_sha, root, indexer, indexer_version, id);
  `,
  /* 6: job secrets sealed in a table of their own, gone when the job ends (src/coordinator/secrets) */ `
  CREATE TABLE job_secrets (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    PRIMARY KEY (job_id, name)
  );
  -- Every path that ends a job (an attempt's end, a lapsed lease, a cancel) updates its state:
  -- the secrets go in that same transaction.
  CREATE TRIGGER job_secrets_end AFTER UPDATE OF state ON jobs
    WHEN NEW.state IN ('completed', 'failed', 'errored', 'canceled')
  BEGIN
    DELETE FROM job_secrets WHERE job_id = NEW.id;
  END;
  -- Specs stored before held their values: those of unfinished jobs move here (unsealed, until
  -- \`airlock server rotate-secrets-key\` seals them), and every spec keeps only the names.
  INSERT INTO job_secrets (job_id, name, key_id, nonce, ciphertext)
    SELECT j.id, 'secrets.' || s.key, 'plaintext', X'', CAST(s.value AS BLOB)
    FROM jobs j, json_each(j.spec, '$.secrets') s WHERE j.state IN ('queued', 'processing');
  INSERT INTO job_secrets (job_id, name, key_id, nonce, ciphertext)
    SELECT j.id, 'registryAuth.' || r.key, 'plaintext', X'', CAST(json_extract(r.value, '$.password') AS BLOB)
    FROM jobs j, json_each(j.spec, '$.registryAuth') r WHERE j.state IN ('queued', 'processing');
  UPDATE jobs SET spec = json_set(spec, '$.secrets', json((SELECT json_group_object(key, '********') FROM json_each(jobs.spec, '$.secrets'))))
    WHERE json_type(spec, '$.secrets') = 'object' AND spec -> '$.secrets' <> '{}';
  UPDATE jobs SET spec = json_set(spec, '$.registryAuth', json((SELECT json_group_object(key, json_set(value, '$.password', '********')) FROM json_each(jobs.spec, '$.registryAuth'))))
    WHERE json_type(spec, '$.registryAuth') = 'object' AND spec -> '$.registryAuth' <> '{}';
  `,
  /* 7: indexing policies per repository (docs/indexing.md) */ `
  CREATE TABLE index_policies (
    repository TEXT PRIMARY KEY,
    auto_index INTEGER NOT NULL DEFAULT 0,
    config TEXT,
    seen_head TEXT,
    updated_at INTEGER NOT NULL
  );
  `,
  /* 8: what an executor's warm microVM pool costs, as of its last heartbeat (JSON) */ `
  ALTER TABLE executors ADD COLUMN warm_pool TEXT;
  `,
  /* 9: batch versions' secret values sealed apart from their spec and its text */ `
  CREATE TABLE batch_secrets (
    batch_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    PRIMARY KEY (batch_id, version, name),
    FOREIGN KEY (batch_id, version) REFERENCES batch_versions (batch_id, version)
  );
  -- Versions stored before held their values: they move here (unsealed, until a rotation seals
  -- them), and each spec and its text keep only the names (the text masked longest value first).
  INSERT INTO batch_secrets (batch_id, version, name, key_id, nonce, ciphertext)
    SELECT v.batch_id, v.version, 'secrets.' || s.key, 'plaintext', X'', CAST(s.value AS BLOB)
    FROM batch_versions v, json_each(v.spec, '$.job.secrets') s WHERE s.type = 'text';
  WITH RECURSIVE numbered (batch_id, version, n, value) AS (
    SELECT v.batch_id, v.version, row_number() OVER (PARTITION BY v.batch_id, v.version ORDER BY length(s.value) DESC, s.key), s.value
    FROM batch_versions v, json_each(v.spec, '$.job.secrets') s WHERE s.type = 'text'
  ),
  masking (batch_id, version, n, text) AS (
    SELECT batch_id, version, 0, spec_text FROM batch_versions WHERE json_type(spec, '$.job.secrets') = 'object'
    UNION ALL
    SELECT m.batch_id, m.version, m.n + 1, replace(m.text, s.value, '********')
    FROM masking m JOIN numbered s ON s.batch_id = m.batch_id AND s.version = m.version AND s.n = m.n + 1
  )
  UPDATE batch_versions SET spec_text = (SELECT text FROM masking m WHERE m.batch_id = batch_versions.batch_id AND m.version = batch_versions.version ORDER BY n DESC LIMIT 1)
    WHERE json_type(spec, '$.job.secrets') = 'object';
  UPDATE batch_versions SET spec = json_set(spec, '$.job.secrets', json((SELECT json_group_object(key, '********') FROM json_each(batch_versions.spec, '$.job.secrets'))))
    WHERE json_type(spec, '$.job.secrets') = 'object' AND spec -> '$.job.secrets' <> '{}';
  `,
  /* 10: the executor protocol each executor speaks (docs/deploy.md); executors from before spoke 1 */ `
  ALTER TABLE executors ADD COLUMN protocol_version INTEGER NOT NULL DEFAULT 1;
  `,
];
