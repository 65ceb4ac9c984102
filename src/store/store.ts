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
import type { BatchStore } from "./batch-types.ts";
import type { IndexStore } from "./index-types.ts";

export type * from "./batch-types.ts";
export type * from "./index-types.ts";

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
