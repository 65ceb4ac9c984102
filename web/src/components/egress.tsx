/** What a job reached through the egress gateway: its network, totals, refusals, and every connection. */
import { useEffect, useState } from "preact/hooks";
import type { EgressRecord, JobView } from "../../../src/protocol/index.ts";
import { formatSize } from "../format.ts";
import { useApi } from "../hooks.ts";
import { ErrorBox, Loading } from "./common.tsx";

/** The artifact the executor uploads (EGRESS_ARTIFACT in the protocol; the bundle keeps zod out, so only types come from there). */
const EGRESS_ARTIFACT = "egress.json";

/** Connections listed before the rest are folded away. */
const SHOWN = 200;

export function EgressSection({ job }: { job: JobView }) {
  const api = useApi();
  const artifact = job.artifacts.find((candidate) => candidate.name === EGRESS_ARTIFACT);
  const [record, setRecord] = useState<EgressRecord | undefined>();
  const [error, setError] = useState<Error | undefined>();
  const [all, setAll] = useState(false);
  const key = artifact ? `${job.id}:${artifact.sha256}` : "";
  useEffect(() => {
    setRecord(undefined);
    setError(undefined);
    if (!artifact) return;
    const controller = new AbortController();
    api
      .artifact(job.id, EGRESS_ARTIFACT, controller.signal)
      .then((blob) => blob.text())
      .then((text) => setRecord(JSON.parse(text) as EgressRecord))
      .catch((caught: unknown) => {
        if (!controller.signal.aborted) setError(caught instanceof Error ? caught : new Error(String(caught)));
      });
    return () => controller.abort();
  }, [key]);

  const network = job.spec.network;
  const asked = network.mode === "none" ? "none" : network.allow ? `internet, only ${network.allow.join(", ")}` : "internet";
  const connections = record ? (all ? record.connections : record.connections.slice(0, SHOWN)) : [];
  return (
    <section aria-labelledby="egress-title" class="card">
      <h2 id="egress-title">Network</h2>
      <p>
        Asked for: <strong>{asked}</strong>
        {job.spec.resources.egressBytes ? `; at most ${formatSize(job.spec.resources.egressBytes)}` : ""}
      </p>
      {network.mode === "none" ? null : !artifact ? (
        <p class="muted">{job.state === "queued" || job.state === "processing" ? "The egress record is uploaded when the job ends." : "No egress record (the runtime had the host's network, or no gateway ran)."}</p>
      ) : (
        <>
          <ErrorBox error={error}>Could not load the egress record</ErrorBox>
          {!record ? (
            error ? null : <Loading what="the egress record" />
          ) : (
            <>
              <p data-testid="egress-totals">
                {record.totals.connections} connection(s): {record.totals.allowed} allowed, {record.totals.refused} refused; {formatSize(record.totals.bytesOut)} sent,{" "}
                {formatSize(record.totals.bytesIn)} received
                {record.dropped ? ` (${record.dropped} more not kept)` : ""}
              </p>
              {record.limitHit ? (
                <p class="error-text" role="alert">
                  {record.limitHit}
                </p>
              ) : null}
              <table class="table">
                <thead>
                  <tr>
                    <th scope="col">Verdict</th>
                    <th scope="col">Protocol</th>
                    <th scope="col">Asked for</th>
                    <th scope="col">Address</th>
                    <th scope="col" class="num">
                      Sent
                    </th>
                    <th scope="col" class="num">
                      Received
                    </th>
                    <th scope="col">Rule</th>
                  </tr>
                </thead>
                <tbody>
                  {connections.map((entry, index) => (
                    <tr key={index} class={entry.verdict === "refused" ? "refused" : undefined}>
                      <td>{entry.verdict}</td>
                      <td>{entry.protocol}</td>
                      <td>
                        <code>
                          {entry.host}:{entry.port}
                        </code>
                      </td>
                      <td>
                        <code>{entry.address ?? "-"}</code>
                      </td>
                      <td class="num">{formatSize(entry.bytesOut)}</td>
                      <td class="num">{formatSize(entry.bytesIn)}</td>
                      <td>{entry.reason ?? entry.rule ?? ""}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
              {!all && record.connections.length > SHOWN ? (
                <button type="button" class="button small" onClick={() => setAll(true)}>
                  Show all {record.connections.length}
                </button>
              ) : null}
            </>
          )}
        </>
      )}
    </section>
  );
}
