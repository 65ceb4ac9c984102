/**
 * Code indexing (docs/indexing.md): the views of indexes, the request that queues indexing jobs,
 * and `airlock-index.yaml`, the file a repository may hold to override inference.
 *
 * Routes (API token):
 *   POST /api/indexes            IndexRequest -> IndexPlanResponse (dryRun: nothing queued)
 *   GET  /api/indexes            ?repository=R&commit=SHA -> { indexes: IndexView[] }
 *   GET  /api/indexes/:id        IndexView
 *   GET  /api/indexes/:id/file   the index.scip bytes (completed indexes only)
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
  /** Where the roots came from: inference, or the repository's airlock-index.yaml. */
  source: z.enum(["inferred", "override"]),
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
        /** Install commands (run in the root); default: from the lockfile. `[]` installs nothing. */
        install: z.union([CommandList, z.array(z.never()).length(0)]).optional(),
        /** The indexer command (run in the root); it must write `index.scip` there. */
        index: CommandList.optional(),
        image: z.string().min(1).max(512).optional(),
        /** Names the indexer and its version in the registry of indexes when `index` is not scip-typescript's. */
        indexer: z.strictObject({ name: Identifier, version: z.string().min(1).max(64) }).optional(),
      }),
    )
    .min(1, "name at least one root")
    .max(200),
});
export type IndexOverride = z.infer<typeof IndexOverride>;
