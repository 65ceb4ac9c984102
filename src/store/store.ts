/**
 * The storage seam. A backend (sqlite/, postgres/) implements `Store`: small ports, each
 * with a shared conformance suite in test/store/. Methods take `now` (epoch ms) as an argument so
 * time is an input, identical for every backend and controllable in tests. Records are domain
 * objects, never driver rows.
 *
 * Fencing: every write on behalf of an attempt takes an AttemptRef and is refused with
 * LeaseLostError unless that attempt is still the job's current, processing attempt.
 */
import type { AttemptOutcome, EntryState, ExecutorIdentity, Isolation, JobSpec, JobState, NetworkMode, WarmPoolReport } from "../protocol/index.ts";

export interface JobRecord {
  id: number;
  queue: string;
  repository: string | null;
  /** The commit as submitted (e.g. "main"), and the sha it resolved to at submit time. */
  ref: string | null;
  commit: string | null;
  spec: JobSpec;
  state: JobState;
  attempt: number;
  maxAttempts: number;
  isolation: Isolation;
  network: NetworkMode;
  executorName: string | null;
  failureMessage: string | null;
  cancelRequested: boolean;
  createdAt: number;
  queuedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  leaseExpiresAt: number | null;
}

export interface EntryRecord {
  key: string;
  kind: "prepare" | "step" | "finalize";
  index: number;
  state: EntryState;
  exitCode: number | null;
  durationMs: number | null;
  startedAt: number | null;
  finishedAt: number | null;
  size: number;
  message: string | null;
}

export interface ArtifactRecord {
  name: string;
  size: number;
  sha256: string;
  createdAt: number;
}

export interface JobDetail {
  job: JobRecord;
  /**
   * Entries of the job's current attempt (or, before its first claim, of the attempt to come):
   * prepare and every step, in order, and finalize once used. Those the attempt never touched are
   * pending while it may still run them, skipped once it ended (see rows.ts `currentEntries`).
   */
  entries: EntryRecord[];
  /** Artifacts of the job's current attempt. */
  artifacts: ArtifactRecord[];
}

/** The attempt a job token stands for. */
export interface AttemptRef {
  jobId: number;
  attempt: number;
  repository: string | null;
  executorName: string;
}

export interface TokenLookup extends AttemptRef {
  /** False once the attempt ended or was reset: the token is dead. */
  live: boolean;
}

/**
 * One secret value of a job as stored: sealed by the coordinator (src/coordinator/secrets), opaque
 * to the store. Names are "secrets.<NAME>" and "registryAuth.<host>" (src/protocol/job-secrets.ts).
 */
export interface SealedSecret {
  name: string;
  /** Which key sealed it ("plaintext": none). */
  keyId: string;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

/** Whose a stored secret is: a job's (until it ends), or a batch version's (for its retries). */
export type SecretOwner = { jobId: number } | { batchId: number; version: number };

export interface StoredSecret extends SealedSecret {
  owner: SecretOwner;
}

export interface NewJob {
  /** Stored with every secret value masked; the values go in `secrets`. */
  spec: JobSpec;
  /** The sealed values of the spec's secrets, one per name (see job-secrets.ts); a name without one is refused. */
  secrets?: SealedSecret[] | undefined;
  /** The commit as submitted and as resolved; both null without a repository. */
  ref: string | null;
  commit: string | null;
}

export interface ClaimRequest {
  executor: ExecutorIdentity;
  /** SHA-256 of the job token minted for this attempt. */
  tokenHash: string;
  leaseMs: number;
  /**
   * The executor's queues in the order to try them: the job comes from the first queue holding
   * one this executor can take (the oldest there). Without it, the oldest such job across all of
   * the executor's queues. The coordinator uses it for weighted fairness between queues.
   */
  preference?: readonly string[] | undefined;
}

/** An executor as last heard from (what network it offers is not kept: it matters only to its claims). */
export interface ExecutorRecord extends Omit<ExecutorIdentity, "network"> {
  firstSeenAt: number;
  lastHeartbeatAt: number;
  runningJobIds: number[];
  /** As of its last heartbeat. */
  warmPool: WarmPoolReport | null;
}

export interface QueueStats {
  name: string;
  queued: number;
  processing: number;
  oldestQueuedAt: number | null;
}

export interface JobFilter {
  state?: JobState | undefined;
  queue?: string | undefined;
  repository?: string | undefined;
  before?: number | undefined;
  limit: number;
}

export interface EntryResult {
  state: "completed" | "failed" | "skipped";
  exitCode: number | null;
  durationMs: number;
  message?: string | undefined;
}

export interface JobStore {
  enqueue(job: NewJob, now: number): Promise<JobRecord>;
  /** Hands the oldest matching queued job to an executor as a new attempt, or undefined. */
  claim(request: ClaimRequest, now: number): Promise<JobRecord | undefined>;
  /** Records the executor (and its warm pool), extends the leases of its jobs, says which it still holds and which to cancel. */
  heartbeat(executor: ExecutorIdentity, jobIds: number[], leaseMs: number, now: number, warmPool?: WarmPoolReport | null): Promise<{ knownIds: number[]; cancelIds: number[] }>;
  /** The attempt a job token hash belongs to (live or ended), or undefined for an unknown token. */
  findAttempt(tokenHash: string): Promise<TokenLookup | undefined>;
  /**
   * Marks a log entry running (again, if already running). Entries are stored when first used, so
   * this may create it; a key the job has no entry for is a NotFoundError, an ended one a ConflictError.
   */
  startEntry(ref: AttemptRef, key: string, now: number): Promise<{ entry: EntryRecord; queuedAt: number; queue: string }>;
  /** Ends a log entry, started or not; the same result again is answered, another is a ConflictError. */
  finishEntry(ref: AttemptRef, key: string, result: EntryResult, now: number): Promise<EntryRecord>;
  /** Ends the attempt. Errored attempts with attempts left requeue the job; a requested cancel wins. */
  finishAttempt(ref: AttemptRef, outcome: AttemptOutcome, message: string | null, now: number): Promise<JobRecord>;
  /** Queued jobs end canceled at once; processing jobs are flagged for their executor to kill. */
  requestCancel(jobId: number, now: number): Promise<JobRecord>;
  /** Requeues (or errors, when out of attempts) every processing job whose lease lapsed. */
  reapExpiredLeases(now: number): Promise<JobRecord[]>;
  getJob(id: number): Promise<JobDetail | undefined>;
  listJobs(filter: JobFilter): Promise<JobRecord[]>;
  listExecutors(): Promise<ExecutorRecord[]>;
  queueStats(): Promise<QueueStats[]>;
}

export interface OutputStore {
  /**
   * Appends bytes at `offset` of a log entry. Idempotent: bytes already stored are skipped, so a
   * retried request never duplicates. An offset past the end is a ConflictError.
   */
  appendLog(ref: AttemptRef, key: string, offset: number, data: Uint8Array, now: number): Promise<{ size: number; cancel: boolean }>;
  readLog(jobId: number, attempt: number, key: string, offset: number, limit: number): Promise<Uint8Array>;
  putArtifact(ref: AttemptRef, name: string, data: AsyncIterable<Uint8Array>, now: number): Promise<ArtifactRecord>;
  /** The artifact's bytes in order, or undefined when the job's current attempt has none by that name. */
  readArtifact(jobId: number, name: string): Promise<{ record: ArtifactRecord; chunks: AsyncIterable<Uint8Array> } | undefined>;
}

/**
 * Sealed secret values: those of jobs that have not ended, and those of batch versions (which
 * their retries queue jobs with). A job's are written with it (enqueue) and deleted, in the same
 * transaction, when it reaches a terminal state, by whatever path (a trigger in both schemas, so
 * no code path can forget); a batch version's are written with it (createVersion).
 */
export interface SecretStore {
  forJob(jobId: number): Promise<SealedSecret[]>;
  /** Every stored secret, jobs' and batch versions' (for re-sealing under a new key). */
  list(): Promise<StoredSecret[]>;
  /**
   * Replaces a stored value if it is still sealed as `current` says (same key id and nonce);
   * false when it changed or is gone (its job ended meanwhile).
   */
  reseal(owner: SecretOwner, current: SealedSecret, next: SealedSecret): Promise<boolean>;
}

export interface RepositoryRecord {
  name: string;
  source: string;
  createdAt: number;
}

export interface RepositoryStore {
  /** Adds or updates a repository's source. */
  put(name: string, source: string, now: number): Promise<RepositoryRecord>;
  get(name: string): Promise<RepositoryRecord | undefined>;
  list(): Promise<RepositoryRecord[]>;
}

/** Batches: a name, its versions (one per preview or upload), and one entry per repository/workspace of a version. */
export type BatchSource = "server" | "local";

export interface BatchRecord {
  id: number;
  name: string;
  description: string;
  latestVersion: number;
  createdAt: number;
  updatedAt: number;
}

export interface BatchVersionRecord {
  batchId: number;
  version: number;
  /** The normalized batch spec (JSON), and the text it was parsed from. */
  spec: unknown;
  specText: string;
  source: BatchSource;
  createdAt: number;
}

export interface BatchDiffStat {
  files: number;
  added: number;
  deleted: number;
}

export interface BatchApplyRecord {
  state: "pushed" | "unchanged" | "conflict" | "failed";
  branch: string;
  sha: string | null;
  message: string | null;
  at: number;
}

export interface BatchEntryRecord {
  id: number;
  batchId: number;
  version: number;
  repository: string;
  /** The workspace directory, "." for the repository root. */
  workspace: string;
  branch: string;
  commit: string;
  /** The job computing it; null when cached or uploaded. */
  jobId: number | null;
  /** The entry whose result this one reuses (always one that computed it itself). */
  cachedFromEntryId: number | null;
  state: JobState;
  diffStat: BatchDiffStat | null;
  cacheKey: string;
  failureMessage: string | null;
  apply: BatchApplyRecord | null;
  createdAt: number;
  updatedAt: number;
}

/** An entry as written: the record less what the store assigns (ids, version, times) and the apply result. */
export type NewBatchEntry = Omit<BatchEntryRecord, "id" | "batchId" | "version" | "apply" | "createdAt" | "updatedAt"> & {
  /** Stored with the entry (uploaded results): "diff", "log", "outputs". */
  blobs?: Record<string, Uint8Array> | undefined;
};

export interface NewBatchVersion {
  name: string;
  description: string;
  /** Stored with the values of `job.secrets` masked, in the spec and its text; the values go in `secrets`. */
  spec: unknown;
  specText: string;
  /** The sealed values of `job.secrets`, one per name ("secrets.<NAME>"); a name without one is refused. */
  secrets?: SealedSecret[] | undefined;
  source: BatchSource;
  entries: NewBatchEntry[];
}

/** Fields of an entry to change; `undefined` leaves one as it is, `null` clears it. */
export interface BatchEntryPatch {
  state?: JobState | undefined;
  jobId?: number | null | undefined;
  cachedFromEntryId?: number | null | undefined;
  diffStat?: BatchDiffStat | null | undefined;
  failureMessage?: string | null | undefined;
  apply?: BatchApplyRecord | null | undefined;
}

export interface BatchStore {
  /** Creates the batch when new, and its next version (1, 2, ...) with these entries, in one transaction. */
  createVersion(input: NewBatchVersion, now: number): Promise<{ batch: BatchRecord; version: BatchVersionRecord; entries: BatchEntryRecord[] }>;
  getBatch(name: string): Promise<BatchRecord | undefined>;
  /** Most recently changed first. */
  listBatches(limit: number): Promise<BatchRecord[]>;
  /** Version numbers, oldest first. */
  listVersions(batchId: number): Promise<number[]>;
  getVersion(batchId: number, version: number): Promise<BatchVersionRecord | undefined>;
  /** The sealed values of a version's `job.secrets`. */
  versionSecrets(batchId: number, version: number): Promise<SealedSecret[]>;
  /** A version's entries by repository, then workspace. */
  listEntries(batchId: number, version: number): Promise<BatchEntryRecord[]>;
  getEntry(id: number): Promise<BatchEntryRecord | undefined>;
  /** A NotFoundError for an unknown entry. */
  updateEntry(id: number, patch: BatchEntryPatch, now: number): Promise<BatchEntryRecord>;
  /** The newest completed entry with this cache key that computed its result itself (not cached). */
  findCached(cacheKey: string): Promise<BatchEntryRecord | undefined>;
  /** Replaces a blob of an entry. */
  putBlob(entryId: number, name: string, data: Uint8Array): Promise<void>;
  readBlob(entryId: number, name: string): Promise<Uint8Array | undefined>;
}

/**
 * Code indexes (docs/indexing.md): one row per indexing of (repository, commit, root, indexer,
 * indexer version), made when its job is queued. It is "pending" while the job may still run,
 * then "completed" (the index is the job's artifact, counted) or "failed" (no index).
 */
export type IndexState = "pending" | "completed" | "failed";

export interface IndexCounts {
  documents: number;
  symbols: number;
  occurrences: number;
  size: number;
}

export interface IndexRecord {
  id: number;
  repository: string;
  commit: string;
  /** The project root inside the repository, "." for its top. */
  root: string;
  indexer: string;
  indexerVersion: string;
  jobId: number;
  /** The name of the job's artifact holding the index. */
  artifact: string;
  state: IndexState;
  counts: IndexCounts | null;
  failureMessage: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface NewIndex {
  repository: string;
  commit: string;
  root: string;
  indexer: string;
  indexerVersion: string;
  jobId: number;
  artifact: string;
}

export interface IndexFilter {
  repository?: string | undefined;
  commit?: string | undefined;
  limit: number;
}

export interface IndexStore {
  create(input: NewIndex, now: number): Promise<IndexRecord>;
  /** Ends a pending index (a NotFoundError for an unknown id, a ConflictError for one already ended). */
  complete(id: number, counts: IndexCounts, now: number): Promise<IndexRecord>;
  fail(id: number, message: string, now: number): Promise<IndexRecord>;
  get(id: number): Promise<IndexRecord | undefined>;
  /** Newest first. */
  list(filter: IndexFilter): Promise<IndexRecord[]>;
  /** The newest index of this key that is pending or completed (failed ones are done again). */
  findLive(key: Pick<NewIndex, "repository" | "commit" | "root" | "indexer" | "indexerVersion">): Promise<IndexRecord | undefined>;
  /** A repository's indexing policy; undefined when none was ever set. */
  getPolicy(repository: string): Promise<IndexPolicyRecord | undefined>;
  /** Creates or changes a policy; `undefined` fields keep their value (new policy: off, no config). */
  putPolicy(repository: string, patch: IndexPolicyPatch, now: number): Promise<IndexPolicyRecord>;
  /** By repository name. */
  listPolicies(): Promise<IndexPolicyRecord[]>;
  /**
   * Records `head` as the default branch's HEAD last acted on; true only for the one caller that
   * changed it (so a new HEAD is indexed once, whichever coordinator sees it first).
   */
  markHeadSeen(repository: string, head: string, now: number): Promise<boolean>;
}

/** Per repository: index the default branch on each new HEAD, and the index config overriding inference. */
export interface IndexPolicyRecord {
  repository: string;
  autoIndex: boolean;
  /** airlock-index.yaml text held by the coordinator; null: the tree's file or inference. */
  config: string | null;
  /** The default branch's HEAD last acted on (indexed when auto-indexing). */
  seenHead: string | null;
  updatedAt: number;
}

export interface IndexPolicyPatch {
  autoIndex?: boolean | undefined;
  config?: string | null | undefined;
}

/** What a backend can do natively; the coordinator branches on these, never on backend names. */
export interface StoreCapabilities {
  /** Changes made by other processes are announced (e.g. LISTEN/NOTIFY); else only local ones are. */
  crossProcessNotifications: boolean;
}

/** `queued`: a job became claimable (new, or requeued), needing at least `isolation` and `network` (unknown: any). */
export type StoreChange = { kind: "queued"; queue: string; isolation: Isolation; network?: NetworkMode | undefined } | { kind: "job"; jobId: number };

export interface Store {
  readonly jobs: JobStore;
  readonly outputs: OutputStore;
  readonly secrets: SecretStore;
  readonly repositories: RepositoryStore;
  readonly batches: BatchStore;
  readonly indexes: IndexStore;
  readonly capabilities: StoreCapabilities;
  /** Subscribes to changes (jobs queued, a job's state or logs changed). Returns an unsubscribe. */
  onChange(listener: (change: StoreChange) => void): () => void;
  migrate(): Promise<void>;
  close(): Promise<void>;
}
