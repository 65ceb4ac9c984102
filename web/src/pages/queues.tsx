/** Queues: what waits now, and each queue's recent depth, waits, pickup latency and throughput. */
import { useState } from "preact/hooks";
import type { QueueHistory, QueueView } from "../../../src/protocol/index.ts";
import { BarChart, Legend, LineChart, type Series } from "../components/charts.tsx";
import { ErrorBox, Loading } from "../components/common.tsx";
import { formatDuration } from "../format.ts";
import { useApi, usePolling, useTitle } from "../hooks.ts";

const REFRESH_MS = 10_000;
/** Windows offered, each drawn as 60 buckets. */
const WINDOWS = [
  { value: "15m", label: "15 minutes", bucket: "15s" },
  { value: "1h", label: "1 hour", bucket: "1m" },
  { value: "6h", label: "6 hours", bucket: "6m" },
  { value: "24h", label: "24 hours", bucket: "24m" },
] as const;

type Buckets = QueueHistory["queues"][number]["buckets"];

function clock(iso: string): string {
  return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function peak(values: (number | null)[]): number {
  return Math.max(0, ...values.filter((value): value is number => value !== null));
}

function QueueCharts({ name, buckets, windowLabel, startLabel }: { name: string; buckets: Buckets; windowLabel: string; startLabel: string }) {
  const labels = buckets.map((bucket) => clock(bucket.start));
  const depth: Series[] = [{ label: "waiting", values: buckets.map((bucket) => bucket.depth), className: "series-1" }];
  const oldest: Series[] = [{ label: "oldest wait", values: buckets.map((bucket) => bucket.oldestWaitMs), className: "series-2" }];
  const pickup: Series[] = [
    { label: "p50", values: buckets.map((bucket) => bucket.pickupP50Ms), className: "series-1" },
    { label: "max", values: buckets.map((bucket) => bucket.pickupMaxMs), className: "series-3" },
  ];
  const throughput: Series[] = [
    { label: "completed", values: buckets.map((bucket) => bucket.completed), className: "bar-completed" },
    { label: "failed", values: buckets.map((bucket) => bucket.failed), className: "bar-failed" },
    { label: "errored", values: buckets.map((bucket) => bucket.errored), className: "bar-errored" },
    { label: "canceled", values: buckets.map((bucket) => bucket.canceled), className: "bar-canceled" },
  ];
  const last = buckets.at(-1);
  const ended = buckets.reduce((sum, bucket) => sum + bucket.completed + bucket.failed + bucket.errored + bucket.canceled, 0);
  const claimed = buckets.reduce((sum, bucket) => sum + bucket.claimed, 0);
  const p50s = buckets.map((bucket) => bucket.pickupP50Ms).filter((value): value is number => value !== null);
  return (
    <section class="card queue-card" aria-labelledby={`queue-${name}`}>
      <h2 id={`queue-${name}`}>
        Queue <code>{name}</code>
      </h2>
      <div class="charts">
        <figure>
          <figcaption>
            Depth <span class="muted">(jobs waiting; now {last?.depth ?? 0})</span>
          </figcaption>
          <LineChart
            series={depth}
            labels={labels}
            format={(value) => String(Math.round(value))}
            startLabel={startLabel}
            summary={`Jobs waiting in ${name} over the last ${windowLabel}: now ${last?.depth ?? 0}, at most ${peak(depth[0]?.values ?? [])}`}
          />
        </figure>
        <figure>
          <figcaption>
            Oldest waiting job <span class="muted">(now {last?.oldestWaitMs == null ? "none" : formatDuration(last.oldestWaitMs)})</span>
          </figcaption>
          <LineChart
            series={oldest}
            labels={labels}
            format={formatDuration}
            startLabel={startLabel}
            summary={`Longest wait in ${name} over the last ${windowLabel}: at most ${formatDuration(peak(oldest[0]?.values ?? []))}`}
          />
        </figure>
        <figure>
          <figcaption>
            Pickup latency <span class="muted">(queued → claimed; {claimed} claimed)</span>
          </figcaption>
          <LineChart
            series={pickup}
            labels={labels}
            format={formatDuration}
            startLabel={startLabel}
            summary={
              p50s.length === 0
                ? `No job of ${name} was claimed in the last ${windowLabel}`
                : `Pickup latency in ${name} over the last ${windowLabel}: per-bucket medians from ${formatDuration(Math.min(...p50s))} to ${formatDuration(Math.max(...p50s))}, longest ${formatDuration(peak(pickup[1]?.values ?? []))}`
            }
          />
          <Legend series={pickup} />
        </figure>
        <figure>
          <figcaption>
            Throughput <span class="muted">(jobs ended per bucket; {ended} in all)</span>
          </figcaption>
          <BarChart series={throughput} labels={labels} startLabel={startLabel} summary={`${ended} jobs of ${name} ended in the last ${windowLabel}`} />
          <Legend series={throughput} />
        </figure>
      </div>
    </section>
  );
}

function CurrentTable({ queues }: { queues: QueueView[] }) {
  return (
    <table class="table">
      <caption class="visually-hidden">Queues now</caption>
      <thead>
        <tr>
          <th scope="col">Queue</th>
          <th scope="col" class="num">
            Waiting
          </th>
          <th scope="col" class="num">
            Processing
          </th>
          <th scope="col" class="num">
            Oldest waiting job
          </th>
        </tr>
      </thead>
      <tbody>
        {queues.map((queue) => (
          <tr key={queue.name}>
            <th scope="row">
              <a href={`/jobs?queue=${encodeURIComponent(queue.name)}`}>{queue.name}</a>
            </th>
            <td class="num">{queue.queued}</td>
            <td class="num">{queue.processing}</td>
            <td class="num">{queue.oldestWaitMs === null ? <span class="muted">–</span> : formatDuration(queue.oldestWaitMs)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function QueuesPage() {
  const api = useApi();
  const [windowValue, setWindowValue] = useState<string>("1h");
  const window = WINDOWS.find((candidate) => candidate.value === windowValue) ?? WINDOWS[1];
  useTitle("Queues");
  const current = usePolling((signal) => api.queues(signal), REFRESH_MS, []);
  const history = usePolling((signal) => api.queueHistory(window.value, window.bucket, signal), REFRESH_MS, [window.value]);
  const names = [...new Set([...(current.data ?? []).map((queue) => queue.name), ...(history.data?.queues ?? []).map((queue) => queue.name)])].sort();
  const active = (current.data ?? []).filter((queue) => queue.queued + queue.processing > 0);

  return (
    <>
      <div class="page-heading">
        <h1 tabIndex={-1}>Queues</h1>
        <div class="field inline">
          <label for="queue-window">Window</label>
          <select id="queue-window" value={window.value} onChange={(event) => setWindowValue(event.currentTarget.value)}>
            {WINDOWS.map((option) => (
              <option key={option.value} value={option.value}>
                last {option.label}
              </option>
            ))}
          </select>
        </div>
      </div>
      <ErrorBox error={current.error ?? history.error}>Could not load the queues</ErrorBox>
      <section class="card" aria-labelledby="now-title">
        <h2 id="now-title">Now</h2>
        {current.data === undefined ? (
          <Loading what="queues" />
        ) : active.length === 0 ? (
          <p class="empty">No job is waiting or running.</p>
        ) : (
          <CurrentTable queues={active} />
        )}
      </section>
      {history.data === undefined ? (
        history.error ? null : <Loading what="queue history" />
      ) : names.length === 0 ? (
        <p class="empty">No queue has had jobs in the last {window.label}.</p>
      ) : (
        <>
          {history.data.complete ? null : <p class="notice">This window holds more jobs than the coordinator scans for charts; the oldest buckets may be incomplete.</p>}
          {names.map((name) => {
            const buckets = history.data?.queues.find((queue) => queue.name === name)?.buckets;
            return buckets ? <QueueCharts key={name} name={name} buckets={buckets} windowLabel={window.label} startLabel={`−${window.value}`} /> : null;
          })}
        </>
      )}
    </>
  );
}
