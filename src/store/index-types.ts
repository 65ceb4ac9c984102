/** The code-index port of the store: indexes per (repository, commit, root, indexer) and per-repository policies. */

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

export interface NewIndex {
  repository: string;
  commit: string;
  /** The project root inside the repository, "." for its top. */
  root: string;
  indexer: string;
  indexerVersion: string;
  jobId: number;
  /** The name of the job's artifact holding the index. */
  artifact: string;
}

export interface IndexRecord extends NewIndex {
  id: number;
  state: IndexState;
  counts: IndexCounts | null;
  failureMessage: string | null;
  createdAt: number;
  updatedAt: number;
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
