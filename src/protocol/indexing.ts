/**
 * Code indexing (docs/indexing.md): the views of indexes, the request that queues indexing jobs,
 * and `airlock-index.yaml`, the file a repository may hold to override inference.
 *
 * Routes (API token):
 *   POST /api/indexes            IndexRequest -> IndexPlanResponse (dryRun: nothing queued)
 *   GET  /api/indexes            ?repository=R&commit=SHA -> { indexes: IndexView[] }
 *   GET  /api/indexes/:id        IndexView
 *   GET  /api/indexes/:id/file   the index.scip bytes (completed indexes only)
 *   GET  /api/index-policies     ?repository=R -> { policies: IndexPolicyView[] }
 *   PUT  /api/index-policies     IndexPolicyRequest -> IndexPolicyResponse (turning auto-index on indexes HEAD)
 *   POST /api/repositories/sync  RepositorySyncRequest -> RepositorySyncResponse (fetch the origin; auto-index a new HEAD)
 */
import { z } from "zod";
import { Identifier, JobSpec, RepositoryName } from "./job-spec.ts";
import { WorkspacePath } from "./paths.ts";

export const INDEX_OVERRIDE_FILE = "airlock-index.yaml";

export const IndexRequest = z.strictObject({
  repository: RepositoryName,
  commit: z.string().min(1).max(256).optional(),
  queue: Identifier.optional(),
  dryRun: z.boolean().default(false),
});
export type IndexRequest = z.infer<typeof IndexRequest>;

export const IndexState = z.enum(["pending", "completed", "failed"]);

export const IndexView = z.object({
  id: z.number().int(),
  repository: z.string(),
  commit: z.string(),
  root: z.string(),
  indexer: z.string(),
  indexerVersion: z.string(),
  jobId: z.number().int(),
  state: IndexState,
  documents: z.number().int().nullable(),
  symbols: z.number().int().nullable(),
  occurrences: z.number().int().nullable(),
  size: z.number().int().nullable(),
  failureMessage: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type IndexView = z.infer<typeof IndexView>;

/** One inferred indexing job: what it indexes, its spec, and (unless a dry run) its index. */
export const IndexPlanEntry = z.object({
  root: z.string(),
  indexer: z.string(),
  indexerVersion: z.string(),
  /** Where the roots came from: inference, the tree's airlock-index.yaml, or the coordinator's index config. */
  source: z.enum(["inferred", "override", "coordinator"]),
  /** "queued": a new job; "existing": an index of this key is pending or completed already. */
  action: z.enum(["queued", "existing", "dry-run"]),
  spec: JobSpec,
  index: IndexView.nullable(),
});
export type IndexPlanEntry = z.infer<typeof IndexPlanEntry>;

export const IndexPlanResponse = z.object({
  repository: z.string(),
  commit: z.string(),
  entries: z.array(IndexPlanEntry),
});
export type IndexPlanResponse = z.infer<typeof IndexPlanResponse>;

const CommandList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((value) => (typeof value === "string" ? [value] : value));

/** airlock-index.yaml: the project roots to index, each optionally with its own commands or image. */
export const IndexOverride = z.strictObject({
  /** The image every root's steps run in, unless the root names its own. */
  image: z.string().min(1).max(512).optional(),
  roots: z
    .array(
      z.strictObject({
        path: WorkspacePath,
        /** The root's language; default: Python when it has a pyproject.toml, setup.py or requirements.txt and no package.json. */
        language: z.enum(["typescript", "python"]).optional(),
        /** Install commands (run in the root); default: from the lockfile. `[]` installs nothing. */
        install: z.union([CommandList, z.array(z.never()).length(0)]).optional(),
        /** The indexer command (run in the root); it must write `index.scip` there. */
        index: CommandList.optional(),
        image: z.string().min(1).max(512).optional(),
        /** Names the indexer and its version in the registry of indexes when `index` is not the default indexer's. */
        indexer: z.strictObject({ name: Identifier, version: z.string().min(1).max(64) }).optional(),
      }),
    )
    .min(1, "name at least one root")
    .max(200),
});
export type IndexOverride = z.infer<typeof IndexOverride>;

/** Largest index config the coordinator holds for a repository. */
export const MAX_INDEX_CONFIG_BYTES = 64 * 1024;

/** Changes a repository's indexing policy; a field left out keeps its value. */
export const IndexPolicyRequest = z.strictObject({
  repository: RepositoryName,
  /** Index the default branch whenever the coordinator sees a new HEAD. */
  autoIndex: z.boolean().optional(),
  /** airlock-index.yaml text overriding the tree's file and inference; null removes it. */
  indexConfig: z.string().max(MAX_INDEX_CONFIG_BYTES).nullable().optional(),
});
export type IndexPolicyRequest = z.infer<typeof IndexPolicyRequest>;

export const IndexPolicyView = z.object({
  repository: z.string(),
  autoIndex: z.boolean(),
  indexConfig: z.string().nullable(),
  /** The default branch's HEAD last acted on. */
  seenHead: z.string().nullable(),
  updatedAt: z.string(),
});
export type IndexPolicyView = z.infer<typeof IndexPolicyView>;

/** What auto-indexing did about a HEAD: queued (or found) its indexes, or why it could not. */
export const AutoIndexOutcome = z.object({
  head: z.string(),
  plan: IndexPlanResponse.nullable(),
  error: z.string().nullable(),
});
export type AutoIndexOutcome = z.infer<typeof AutoIndexOutcome>;

export const IndexPolicyResponse = z.object({
  policy: IndexPolicyView,
  /** Set when this change turned auto-indexing on and HEAD was new. */
  autoIndex: AutoIndexOutcome.nullable(),
});
export type IndexPolicyResponse = z.infer<typeof IndexPolicyResponse>;

export const RepositorySyncRequest = z.strictObject({ repository: RepositoryName });

export const RepositorySyncResponse = z.object({
  repository: z.string(),
  /** The default branch's HEAD after the fetch (null: the repository has none). */
  head: z.string().nullable(),
  previousHead: z.string().nullable(),
  /** Set when auto-indexing is on and HEAD was new. */
  autoIndex: AutoIndexOutcome.nullable(),
});
export type RepositorySyncResponse = z.infer<typeof RepositorySyncResponse>;
