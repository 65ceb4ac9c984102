/** Code indexes per repository (docs/indexing.md): each index's key, state, counts and job; the repository's auto-index policy. */
import type { IndexPolicyView, IndexView } from "../../../src/protocol/indexing.ts";
import { ErrorBox, Loading, Time } from "../components/common.tsx";
import { useApi, useNow, usePolling, useTitle } from "../hooks.ts";

const REFRESH_MS = 5000;

const count = (value: number | null): string => (value === null ? "–" : value.toLocaleString("en"));

function IndexBadge({ state }: { state: IndexView["state"] }) {
  return (
    <span class={`badge badge-${state}`}>
      <span class="badge-dot" aria-hidden="true" />
      {state}
    </span>
  );
}

function RepositoryIndexes({ repository, indexes, policy, now }: { repository: string; indexes: IndexView[]; policy: IndexPolicyView | undefined; now: number }) {
  const id = `indexes-${repository.replace(/[^A-Za-z0-9_-]/g, "-")}`;
  return (
    <section aria-labelledby={id} class="index-repository">
      <h2 id={id}>
        {repository}{" "}
        <span class="muted">
          auto-index {policy?.autoIndex ? "on" : "off"}
          {policy?.indexConfig ? ", index config held by the coordinator" : ""}
        </span>
      </h2>
      <table class="table indexes">
        <caption class="visually-hidden">Indexes of {repository}, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Index</th>
            <th scope="col">Commit</th>
            <th scope="col">Root</th>
            <th scope="col">Indexer</th>
            <th scope="col">State</th>
            <th scope="col" class="num">Documents</th>
            <th scope="col" class="num">Symbols</th>
            <th scope="col" class="num">Occurrences</th>
            <th scope="col">Job</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {indexes.map((index) => (
            <tr key={index.id}>
              <th scope="row">#{index.id}</th>
              <td>
                <code title={index.commit}>{index.commit.slice(0, 12)}</code>
              </td>
              <td>
                <code>{index.root}</code>
              </td>
              <td>
                {index.indexer} {index.indexerVersion}
              </td>
              <td>
                <IndexBadge state={index.state} />
                {index.failureMessage ? <div class="muted">{index.failureMessage}</div> : null}
              </td>
              <td class="num">{count(index.documents)}</td>
              <td class="num">{count(index.symbols)}</td>
              <td class="num">{count(index.occurrences)}</td>
              <td>
                <a href={`/jobs/${index.jobId}`}>Job #{index.jobId}</a>
              </td>
              <td>
                <Time iso={index.createdAt} now={now} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export function IndexesPage() {
  const api = useApi();
  const now = useNow(1000);
  useTitle("Indexes");
  const indexes = usePolling((signal) => api.indexes(signal), REFRESH_MS, []);
  const policies = usePolling((signal) => api.indexPolicies(signal), REFRESH_MS, []);
  const byRepository = new Map<string, IndexView[]>();
  for (const index of indexes.data ?? []) byRepository.set(index.repository, [...(byRepository.get(index.repository) ?? []), index]);
  return (
    <>
      <div class="page-heading">
        <h1 tabIndex={-1}>Indexes</h1>
        {indexes.data ? <span class="muted">{indexes.data.length} indexes</span> : null}
      </div>
      <ErrorBox error={indexes.error ?? policies.error}>Could not load indexes</ErrorBox>
      {indexes.data === undefined ? (
        indexes.error ? null : <Loading what="indexes" />
      ) : byRepository.size === 0 ? (
        <p class="empty">No index yet. Queue one with `airlock index REPO`, or keep a repository indexed with `airlock repo set REPO --auto-index`.</p>
      ) : (
        [...byRepository.entries()]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([repository, list]) => <RepositoryIndexes key={repository} repository={repository} indexes={list} policy={policies.data?.find((policy) => policy.repository === repository)} now={now} />)
      )}
    </>
  );
}
