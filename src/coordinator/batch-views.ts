/** Batch store records -> the batch API's views (ISO timestamps, secret values masked). */
import type { BatchEntryView, BatchSpec, BatchSummary, BatchView } from "../protocol/batch.ts";
import { isTerminal, JOB_STATES, maskBatchSecrets } from "../protocol/index.ts";
import type { BatchEntryRecord, BatchRecord, BatchVersionRecord } from "../store/index.ts";

export function batchEntryView(entry: BatchEntryRecord): BatchEntryView {
  return {
    id: entry.id,
    version: entry.version,
    repository: entry.repository,
    workspace: entry.workspace,
    branch: entry.branch,
    commit: entry.commit,
    state: entry.state,
    jobId: entry.jobId,
    cached: entry.cachedFromEntryId !== null,
    cachedFromEntryId: entry.cachedFromEntryId,
    cacheKey: entry.cacheKey,
    diffStat: entry.diffStat,
    failureMessage: entry.failureMessage,
    apply: entry.apply ? { ...entry.apply, at: new Date(entry.apply.at).toISOString() } : null,
    createdAt: new Date(entry.createdAt).toISOString(),
    updatedAt: new Date(entry.updatedAt).toISOString(),
  };
}

const COUNT_ORDER = [...JOB_STATES, "cached", "apply:pushed", "apply:unchanged", "apply:conflict", "apply:failed"];

/** Entries by state, then "cached" and "apply:<result>", keys in that order. */
export function batchCounts(entries: readonly BatchEntryRecord[]): Record<string, number> {
  const found = new Map<string, number>();
  const add = (key: string): void => {
    found.set(key, (found.get(key) ?? 0) + 1);
  };
  for (const entry of entries) {
    add(entry.state);
    if (entry.cachedFromEntryId !== null) add("cached");
    if (entry.apply) add(`apply:${entry.apply.state}`);
  }
  return Object.fromEntries(COUNT_ORDER.filter((key) => found.has(key)).map((key) => [key, found.get(key) ?? 0]));
}

export function batchSummary(batch: BatchRecord, entries: readonly BatchEntryRecord[]): BatchSummary {
  return {
    name: batch.name,
    description: batch.description,
    latestVersion: batch.latestVersion,
    createdAt: new Date(batch.createdAt).toISOString(),
    updatedAt: new Date(batch.updatedAt).toISOString(),
    counts: batchCounts(entries),
    total: entries.length,
    running: entries.some((entry) => !isTerminal(entry.state)),
  };
}

export function batchView(
  batch: BatchRecord,
  version: BatchVersionRecord,
  versions: number[],
  entries: readonly BatchEntryRecord[],
  latestEntries: readonly BatchEntryRecord[],
  warnings: string[] = [],
): BatchView {
  // Stored versions hold no secret values (the store masks them); masking again costs nothing.
  const shown = maskBatchSecrets(version.spec as BatchSpec, version.specText);
  return {
    ...batchSummary(batch, latestEntries),
    versions,
    version: { version: version.version, source: version.source, createdAt: new Date(version.createdAt).toISOString(), specText: shown.specText, spec: shown.spec },
    entries: entries.map(batchEntryView),
    warnings,
  };
}
