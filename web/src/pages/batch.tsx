/**
 * One batch: a version's entries (live while they run), each diff expandable, and Apply (all, or
 * one repository) with the result per repository. Other versions are one choice away.
 */
import { useState } from "preact/hooks";
import type { ApplyResult, BatchView } from "../../../src/protocol/batch.ts";
import { ApiError } from "../api.ts";
import { BatchCounts } from "../components/batch-counts.tsx";
import { applicable, BatchEntries, entryLabel } from "../components/batch-entries.tsx";
import { ErrorBox, Loading, Time } from "../components/common.tsx";
import { Dialog } from "../components/dialog.tsx";
import { shortSha } from "../format.ts";
import { useApi, useNow, usePolling, useTitle } from "../hooks.ts";
import { navigate } from "../router.ts";

const LIVE_MS = 1500;
const IDLE_MS = 10_000;

function ApplyResults({ results }: { results: ApplyResult[] }) {
  const counts = new Map<string, number>();
  for (const result of results) counts.set(result.state, (counts.get(result.state) ?? 0) + 1);
  return (
    <section aria-labelledby="apply-title" class="card apply-results">
      <h2 id="apply-title">Apply results</h2>
      <p role="status">
        {results.length === 0
          ? "Nothing to apply: no completed entry changed anything."
          : [...counts].map(([state, count]) => `${count} ${state}`).join(", ")}
      </p>
      {results.length > 0 ? (
        <table class="table">
          <thead>
            <tr>
              <th scope="col">Repository</th>
              <th scope="col">Result</th>
              <th scope="col">Branch</th>
              <th scope="col">Commit</th>
              <th scope="col">Message</th>
            </tr>
          </thead>
          <tbody>
            {results.map((result) => (
              <tr key={result.entryId} class={`apply-row apply-row-${result.state}`}>
                <th scope="row">{entryLabel(result)}</th>
                <td>
                  <span class={`apply-state apply-${result.state}`}>{result.state}</span>
                </td>
                <td>
                  <code>{result.branch}</code>
                </td>
                <td>{result.sha ? <code title={result.sha}>{shortSha(result.sha)}</code> : <span class="muted">–</span>}</td>
                <td>{result.message ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

function VersionPicker({ batch }: { batch: BatchView }) {
  if (batch.versions.length <= 1) return null;
  return (
    <div class="field inline">
      <label for="batch-version">Version</label>
      <select
        id="batch-version"
        value={String(batch.version.version)}
        onChange={(event) => {
          const chosen = Number(event.currentTarget.value);
          navigate(chosen === batch.latestVersion ? `/batches/${encodeURIComponent(batch.name)}` : `/batches/${encodeURIComponent(batch.name)}?version=${chosen}`);
        }}
      >
        {[...batch.versions].reverse().map((version) => (
          <option key={version} value={String(version)}>
            {version}
            {version === batch.latestVersion ? " (latest)" : ""}
          </option>
        ))}
      </select>
    </div>
  );
}

export function BatchPage({ name, version }: { name: string; version: number | undefined }) {
  const api = useApi();
  const now = useNow(1000);
  useTitle(`Batch ${name}`);
  const [live, setLive] = useState(true);
  const batch = usePolling(
    async (signal) => {
      const view = await api.getBatch(name, version, signal);
      setLive(view.entries.some((entry) => entry.state === "queued" || entry.state === "processing"));
      return view;
    },
    live ? LIVE_MS : IDLE_MS,
    [name, version, live],
  );
  const [confirm, setConfirm] = useState<{ repositories: string[] | undefined } | undefined>();
  const [applying, setApplying] = useState(false);
  const [results, setResults] = useState<ApplyResult[] | undefined>();
  const [applyError, setApplyError] = useState<Error | undefined>();

  const view = batch.data;
  if (!view) {
    const missing = batch.error instanceof ApiError && batch.error.status === 404;
    return (
      <>
        <h1 tabIndex={-1}>Batch {name}</h1>
        {batch.error ? <ErrorBox error={batch.error}>{missing ? "No such batch" : "Could not load the batch"}</ErrorBox> : <Loading what={`batch ${name}`} />}
      </>
    );
  }

  const ready = view.entries.filter(applicable);
  const apply = async (repositories: string[] | undefined): Promise<void> => {
    setConfirm(undefined);
    setApplying(true);
    setApplyError(undefined);
    setResults(undefined);
    try {
      const response = await api.applyBatch(view.name, { ...(repositories ? { repositories } : {}), version: view.version.version });
      setResults(response.results);
      batch.refresh();
    } catch (error) {
      setApplyError(error instanceof Error ? error : new Error(String(error)));
    } finally {
      setApplying(false);
    }
  };
  const confirmCount = confirm?.repositories ? ready.filter((entry) => confirm.repositories?.includes(entry.repository)).length : ready.length;

  return (
    <>
      <nav aria-label="Breadcrumb" class="breadcrumb">
        <a href="/batches">Batches</a> <span aria-hidden="true">/</span> <span aria-current="page">{view.name}</span>
      </nav>
      <div class="page-heading">
        <h1 tabIndex={-1}>Batch {view.name}</h1>
        <VersionPicker batch={view} />
        {live ? (
          <span class="stream-status stream-live" role="status">
            Live
          </span>
        ) : null}
      </div>
      {view.description ? <p>{view.description}</p> : null}
      {view.warnings.map((warning) => (
        <p key={warning} class="notice">
          {warning}
        </p>
      ))}
      <section aria-labelledby="batch-summary-title" class="card">
        <h2 id="batch-summary-title" class="visually-hidden">
          Summary
        </h2>
        <dl class="summary">
          <div>
            <dt>Version</dt>
            <dd>
              {view.version.version} of {view.latestVersion}
            </dd>
          </div>
          <div>
            <dt>Ran</dt>
            <dd>{view.version.source === "local" ? "locally (uploaded)" : "on executors"}</dd>
          </div>
          <div>
            <dt>Created</dt>
            <dd>
              <Time iso={view.version.createdAt} now={now} />
            </dd>
          </div>
          <div>
            <dt>Branch</dt>
            <dd>
              <code>{view.version.spec.changesetTemplate.branch}</code>
            </dd>
          </div>
          <div>
            <dt>Entries</dt>
            <dd>
              <BatchCounts counts={view.counts} total={view.total} />
            </dd>
          </div>
        </dl>
      </section>
      <div class="actions">
        <button type="button" class="button primary" disabled={applying || ready.length === 0} onClick={() => setConfirm({ repositories: undefined })}>
          {applying ? "Applying…" : `Apply all (${ready.length})`}
        </button>
        <span class="muted">Commits each completed diff on its branch and pushes it to the repository's origin.</span>
      </div>
      <ErrorBox error={applyError}>Could not apply</ErrorBox>
      {results ? <ApplyResults results={results} /> : null}
      <section aria-labelledby="entries-title" class="card">
        <h2 id="entries-title">Entries</h2>
        {view.entries.length === 0 ? (
          <p class="muted">This version has no entries.</p>
        ) : (
          <BatchEntries batch={view.name} version={view.version.version} entries={view.entries} busy={applying} onApply={(repository) => setConfirm({ repositories: [repository] })} />
        )}
      </section>
      <details class="card spec">
        <summary>
          <h2 class="inline-heading">Batch spec (version {view.version.version})</h2>
        </summary>
        <pre class="code-block">{view.version.specText}</pre>
      </details>
      <Dialog title={confirm?.repositories ? `Apply ${confirm.repositories.join(", ")}?` : `Apply batch ${view.name}?`} open={confirm !== undefined} onClose={() => setConfirm(undefined)}>
        <p>
          Commits {confirmCount} {confirmCount === 1 ? "diff" : "diffs"} on branch <code>{view.version.spec.changesetTemplate.branch}</code> and pushes{" "}
          {confirmCount === 1 ? "it" : "them"} to each repository's origin. Applying again changes nothing.
        </p>
        <div class="actions">
          <button type="button" class="button primary" onClick={() => void apply(confirm?.repositories)}>
            Yes, apply
          </button>
          <button type="button" class="button" onClick={() => setConfirm(undefined)}>
            Not now
          </button>
        </div>
      </Dialog>
    </>
  );
}
