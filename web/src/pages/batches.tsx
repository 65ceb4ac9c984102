/** The batches list: each batch's latest version and its entries by state, refreshed while the tab is visible. */
import type { BatchSummary } from "../../../src/protocol/batch.ts";
import { ErrorBox, Loading, Time } from "../components/common.tsx";
import { BatchCounts } from "../components/batch-counts.tsx";
import { useApi, useNow, usePolling, useTitle } from "../hooks.ts";

const REFRESH_MS = 2000;

function BatchRow({ batch, now }: { batch: BatchSummary; now: number }) {
  return (
    <tr>
      <th scope="row">
        <a href={`/batches/${encodeURIComponent(batch.name)}`}>{batch.name}</a>
        {batch.description ? <div class="entry-message">{batch.description.split("\n")[0]}</div> : null}
      </th>
      <td class="num">{batch.latestVersion}</td>
      <td class="num">{batch.total}</td>
      <td>
        <BatchCounts counts={batch.counts} total={batch.total} />
      </td>
      <td>
        <Time iso={batch.updatedAt} now={now} />
      </td>
    </tr>
  );
}

export function BatchesPage() {
  const api = useApi();
  const now = useNow(1000);
  useTitle("Batches");
  const batches = usePolling((signal) => api.listBatches(signal), REFRESH_MS, []);
  return (
    <>
      <div class="page-heading">
        <h1 tabIndex={-1}>Batches</h1>
        <span class="muted live-hint">Updates every {REFRESH_MS / 1000} s</span>
      </div>
      <ErrorBox error={batches.error}>Could not load batches</ErrorBox>
      {batches.data === undefined ? (
        batches.error ? null : <Loading what="batches" />
      ) : batches.data.length === 0 ? (
        <p class="empty">No batches yet. Preview one with `airlock batch preview spec.yaml`, or run it here with `airlock batch run spec.yaml --local`.</p>
      ) : (
        <table class="table batches">
          <caption class="visually-hidden">Batches, with their latest version</caption>
          <thead>
            <tr>
              <th scope="col">Batch</th>
              <th scope="col" class="num">
                Latest version
              </th>
              <th scope="col" class="num">
                Entries
              </th>
              <th scope="col">States</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {batches.data.map((batch) => (
              <BatchRow key={batch.name} batch={batch} now={now} />
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
