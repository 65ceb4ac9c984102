/** Batch store records -> the batch API's views (ISO timestamps, secret values masked). */
import type { BatchEntryView, BatchSpec, BatchSummary, BatchView } from "../protocol/batch.ts";
import { isTerminal, JOB_STATES, SECRET_MASK } from "../protocol/index.ts";
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

/** The spec and its text with every secret value replaced by the mask. */
function masked(spec: BatchSpec, text: string): { spec: BatchSpec; specText: string } {
  const secrets = (spec.job.secrets as Record<string, string> | undefined) ?? {};
  const values = Object.values(secrets).filter((value) => typeof value === "string" && value.length > 0);
  if (values.length === 0) return { spec, specText: text };
  let specText = text;
  for (const value of values) specText = specText.split(value).join(SECRET_MASK);
  return { spec: { ...spec, job: { ...spec.job, secrets: Object.fromEntries(Object.keys(secrets).map((name) => [name, SECRET_MASK])) } }, specText };
}

export function batchView(
  batch: BatchRecord,
  version: BatchVersionRecord,
  versions: number[],
  entries: readonly BatchEntryRecord[],
  latestEntries: readonly BatchEntryRecord[],
  warnings: string[] = [],
): BatchView {
  const shown = masked(version.spec as BatchSpec, version.specText);
  return {
    ...batchSummary(batch, latestEntries),
    versions,
    version: { version: version.version, source: version.source, createdAt: new Date(version.createdAt).toISOString(), specText: shown.specText, spec: shown.spec },
    entries: entries.map(batchEntryView),
    warnings,
  };
}
