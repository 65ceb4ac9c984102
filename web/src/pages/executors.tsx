/** Executors: who is pulling jobs, what they can isolate, what they run, whether they are alive, and what their warm VMs cost. */
import type { ExecutorView } from "../../../src/protocol/index.ts";
import { ErrorBox, Loading, Time } from "../components/common.tsx";
import { formatSize } from "../format.ts";
import { useApi, useNow, usePolling, useTitle } from "../hooks.ts";

const REFRESH_MS = 5000;

/** "2/2 idle, 312 MiB resident (156 MiB each), restored from a snapshot". */
function WarmPool({ pool }: { pool: NonNullable<ExecutorView["warmPool"]> }) {
  const each = pool.idle > 0 ? ` (${formatSize(Math.round(pool.idleRssBytes / pool.idle))} each)` : "";
  return (
    <div class="muted warm-pool">
      warm VMs: {pool.idle}/{pool.size} idle{pool.booting ? `, ${pool.booting} booting` : ""}; {formatSize(pool.idleRssBytes)} resident{each};{" "}
      {pool.refill === "restore" ? "restored from a snapshot" : "booted"}
    </div>
  );
}

export function ExecutorsPage() {
  const api = useApi();
  const now = useNow(1000);
  useTitle("Executors");
  const executors = usePolling((signal) => api.executors(signal), REFRESH_MS, []);
  const list = executors.data ?? [];
  const alive = list.filter((executor) => executor.alive).length;
  return (
    <>
      <div class="page-heading">
        <h1 tabIndex={-1}>Executors</h1>
        {executors.data ? (
          <span class="muted">
            {alive} alive{list.length > alive ? `, ${list.length - alive} stale` : ""}
          </span>
        ) : null}
      </div>
      <ErrorBox error={executors.error}>Could not load executors</ErrorBox>
      {executors.data === undefined ? (
        executors.error ? null : <Loading what="executors" />
      ) : list.length === 0 ? (
        <p class="empty">No executor has connected yet. Start one with `airlock executor run --url …`.</p>
      ) : (
        <table class="table executors">
          <caption class="visually-hidden">Executors, most recently seen first</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">Version</th>
              <th scope="col">Host</th>
              <th scope="col">Runtime</th>
              <th scope="col">Isolation offered</th>
              <th scope="col">Queues</th>
              <th scope="col">Running jobs</th>
              <th scope="col">Last heartbeat</th>
            </tr>
          </thead>
          <tbody>
            {list.map((executor) => (
              <tr key={executor.name} class={executor.alive ? undefined : "stale"}>
                <th scope="row">
                  <code>{executor.name}</code>
                </th>
                <td>
                  {executor.alive ? (
                    <span class="badge badge-completed">
                      <span class="badge-dot" aria-hidden="true" />
                      alive
                    </span>
                  ) : (
                    <span class="badge badge-errored" title="No heartbeat within the lease window">
                      <span class="badge-dot" aria-hidden="true" />
                      stale
                    </span>
                  )}
                </td>
                <td>
                  <code>{executor.version}</code> <span class="muted">protocol {executor.protocolVersion}</span>
                </td>
                <td>{executor.hostname}</td>
                <td>
                  {executor.runtime}
                  {executor.warmPool ? <WarmPool pool={executor.warmPool} /> : null}
                </td>
                <td>{executor.isolation.join(", ")}</td>
                <td>{executor.queues.join(", ")}</td>
                <td>
                  {executor.runningJobIds.length === 0 ? (
                    <span class="muted">idle</span>
                  ) : (
                    <ul class="inline-list">
                      {executor.runningJobIds.map((id) => (
                        <li key={id}>
                          <a href={`/jobs/${id}`}>#{id}</a>
                        </li>
                      ))}
                    </ul>
                  )}
                </td>
                <td>
                  <Time iso={executor.lastHeartbeatAt} now={now} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
