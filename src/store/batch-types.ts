/** The batch port of the store: batches, their versions and entries (see store.ts for the seam). */
import type { JobState } from "../protocol/index.ts";
import type { SealedSecret } from "./store.ts";

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
