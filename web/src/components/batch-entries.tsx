/**
 * A batch version's entries: one row per repository/workspace (state, cache use, diff size, apply
 * result), each with its diff (fetched when expanded, drawn by the job page's diff renderer), its
 * log one click away (the job's page, or the stored log of a cached or uploaded entry) and an
 * Apply button for its repository.
 */
import { useEffect, useMemo, useState } from "preact/hooks";
import type { BatchEntryView } from "../../../src/protocol/batch.ts";
import { parseDiff } from "../diff.ts";
import { shortSha } from "../format.ts";
import { useApi } from "../hooks.ts";
import { ErrorBox, isActive, Loading, StateBadge } from "./common.tsx";
import { DiffView } from "./diff-view.tsx";

export function entryLabel(entry: Pick<BatchEntryView, "repository" | "workspace">): string {
  return entry.workspace === "." ? entry.repository : `${entry.repository} (${entry.workspace})`;
}

function entryKey(entry: BatchEntryView): string {
  return `${entry.repository}:${entry.workspace}`;
}

/** The entry's diff, loaded when shown (and again when its content changes). */
function EntryDiff({ batch, version, entry, index }: { batch: string; version: number; entry: BatchEntryView; index: number }) {
  const api = useApi();
  const [text, setText] = useState<string | undefined>();
  const [error, setError] = useState<Error | undefined>();
  const key = `${version}:${entry.id}:${entry.state}:${entry.diffStat ? `${entry.diffStat.files}/${entry.diffStat.added}/${entry.diffStat.deleted}` : ""}`;
  useEffect(() => {
    const controller = new AbortController();
    setError(undefined);
    api.batchDiff(batch, { repository: entry.repository, workspace: entry.workspace, version }, controller.signal).then(setText, (caught: unknown) => {
      if (!controller.signal.aborted) setError(caught instanceof Error ? caught : new Error(String(caught)));
    });
    return () => controller.abort();
  }, [key]);
  const files = useMemo(() => (text === undefined ? undefined : parseDiff(text)), [text]);
  if (entry.state !== "completed") return <p class="muted">{isActive(entry.state) ? "The diff is known once the job's steps are done." : `No diff: the entry ${entry.state}.`}</p>;
  return (
    <>
      <ErrorBox error={error}>Could not load the diff</ErrorBox>
      {files ? <DiffView files={files} idPrefix={`entry-${index}-file`} /> : error ? null : <Loading what="the diff" />}
    </>
  );
}

/** The stored log of an entry that ran no job of its own here (cached or uploaded). */
function EntryLog({ batch, version, entry }: { batch: string; version: number; entry: BatchEntryView }) {
  const api = useApi();
  const [text, setText] = useState<string | undefined>();
  const [error, setError] = useState<Error | undefined>();
  useEffect(() => {
    const controller = new AbortController();
    api.batchLogs(batch, { repository: entry.repository, workspace: entry.workspace, version }, controller.signal).then(setText, (caught: unknown) => {
      if (!controller.signal.aborted) setError(caught instanceof Error ? caught : new Error(String(caught)));
    });
    return () => controller.abort();
  }, [batch, version, entry.id]);
  if (error) return <ErrorBox error={error}>Could not load the log</ErrorBox>;
  if (text === undefined) return <Loading what="the log" />;
  return (
    <pre class="code-block entry-log" tabIndex={0} aria-label={`Stored log of ${entryLabel(entry)}`}>
      {text || "(empty log)"}
    </pre>
  );
}

function ApplyCell({ entry }: { entry: BatchEntryView }) {
  const apply = entry.apply;
  if (!apply) return <span class="muted">–</span>;
  return (
    <span class={`apply-state apply-${apply.state}`} title={apply.message ?? undefined}>
      {apply.state}
      {apply.sha ? (
        <>
          {" "}
          <code title={apply.sha}>{shortSha(apply.sha).slice(0, 10)}</code>
        </>
      ) : null}
    </span>
  );
}

/** Entries that an apply would commit: completed with a change. */
export function applicable(entry: BatchEntryView): boolean {
  return entry.state === "completed" && (entry.diffStat?.files ?? 0) > 0;
}

export function BatchEntries({
  batch,
  version,
  entries,
  busy,
  onApply,
}: {
  batch: string;
  version: number;
  entries: BatchEntryView[];
  busy: boolean;
  onApply: (repository: string) => void;
}) {
  const [open, setOpen] = useState<Record<string, "diff" | "log" | undefined>>({});
  const toggle = (entry: BatchEntryView, what: "diff" | "log"): void => setOpen({ ...open, [entryKey(entry)]: open[entryKey(entry)] === what ? undefined : what });
  return (
    <table class="table batch-entries">
      <caption class="visually-hidden">Entries of version {version}: one per repository and workspace</caption>
      <thead>
        <tr>
          <th scope="col">Repository</th>
          <th scope="col">Workspace</th>
          <th scope="col">State</th>
          <th scope="col">Cached</th>
          <th scope="col" class="num">
            Files
          </th>
          <th scope="col" class="num">
            +/−
          </th>
          <th scope="col">Applied</th>
          <th scope="col">
            <span class="visually-hidden">Actions</span>
          </th>
        </tr>
      </thead>
      {entries.map((entry, index) => {
        const shown = open[entryKey(entry)];
        const label = entryLabel(entry);
        return (
          <tbody key={entryKey(entry)} class="batch-entry" data-repository={entry.repository} data-workspace={entry.workspace}>
            <tr>
              <th scope="row">
                {entry.repository}
                <div class="entry-message">
                  <code title={entry.commit}>{shortSha(entry.commit).slice(0, 10)}</code> {entry.branch}
                </div>
                {entry.failureMessage ? <div class="entry-message error-text">{entry.failureMessage}</div> : null}
              </th>
              <td>{entry.workspace === "." ? <span class="muted">(root)</span> : <code>{entry.workspace}</code>}</td>
              <td>
                <StateBadge state={entry.state} />
              </td>
              <td>{entry.cached ? <span class="badge badge-cached">cached</span> : <span class="muted">–</span>}</td>
              <td class="num">{entry.diffStat ? entry.diffStat.files : "–"}</td>
              <td class="num">
                {entry.diffStat ? (
                  <>
                    <span class="diff-add-count">+{entry.diffStat.added}</span> <span class="diff-del-count">−{entry.diffStat.deleted}</span>
                  </>
                ) : (
                  "–"
                )}
              </td>
              <td>
                <ApplyCell entry={entry} />
              </td>
              <td class="entry-actions">
                <button type="button" class="button small" aria-expanded={shown === "diff"} aria-label={`Diff of ${label}`} onClick={() => toggle(entry, "diff")}>
                  {shown === "diff" ? "Hide diff" : "Diff"}
                </button>{" "}
                {entry.jobId !== null ? (
                  <a class="button small" href={`/jobs/${entry.jobId}`} aria-label={`Log of ${label} (job ${entry.jobId})`}>
                    Log
                  </a>
                ) : (
                  <button type="button" class="button small" aria-expanded={shown === "log"} aria-label={`Log of ${label}`} onClick={() => toggle(entry, "log")}>
                    {shown === "log" ? "Hide log" : "Log"}
                  </button>
                )}{" "}
                <button type="button" class="button small" disabled={busy || !applicable(entry)} aria-label={`Apply ${entry.repository}`} onClick={() => onApply(entry.repository)}>
                  Apply
                </button>
              </td>
            </tr>
            {shown ? (
              <tr class="entry-detail">
                <td colSpan={8}>
                  {shown === "diff" ? <EntryDiff batch={batch} version={version} entry={entry} index={index} /> : <EntryLog batch={batch} version={version} entry={entry} />}
                </td>
              </tr>
            ) : null}
          </tbody>
        );
      })}
    </table>
  );
}
