/** What a job produced: its diff (parsed and shown) and its artifacts (downloaded on request). */
import { useEffect, useMemo, useState } from "preact/hooks";
import type { ArtifactView, JobView } from "../../../src/protocol/index.ts";
import { saveBlob } from "../api.ts";
import { parseDiff } from "../diff.ts";
import { formatSize } from "../format.ts";
import { useApi } from "../hooks.ts";
import { ErrorBox, Loading } from "./common.tsx";
import { DiffView } from "./diff-view.tsx";

/** Diffs larger than this are offered as a download only. */
const MAX_SHOWN_DIFF = 8 * 1024 * 1024;

export function DiffSection({ job }: { job: JobView }) {
  const api = useApi();
  const artifact = job.artifacts.find((candidate) => candidate.name === "diff");
  const [text, setText] = useState<string | undefined>();
  const [error, setError] = useState<Error | undefined>();
  const key = artifact ? `${job.id}:${artifact.sha256}` : "";
  useEffect(() => {
    setText(undefined);
    setError(undefined);
    if (!artifact || artifact.size > MAX_SHOWN_DIFF) return;
    const controller = new AbortController();
    api
      .artifact(job.id, "diff", controller.signal)
      .then((blob) => blob.text())
      .then(setText, (caught: unknown) => {
        if (!controller.signal.aborted) setError(caught instanceof Error ? caught : new Error(String(caught)));
      });
    return () => controller.abort();
  }, [key]);
  const files = useMemo(() => (text === undefined ? undefined : parseDiff(text)), [text]);

  if (!job.spec.outputs.diff && !artifact) return null;
  return (
    <section aria-labelledby="diff-title" class="card">
      <h2 id="diff-title">Diff</h2>
      {!artifact ? (
        <p class="muted">{job.state === "queued" || job.state === "processing" ? "The diff is uploaded when the job's steps are done." : "This job uploaded no diff."}</p>
      ) : artifact.size > MAX_SHOWN_DIFF ? (
        <p>
          The diff is {formatSize(artifact.size)}, too large to show here. <DownloadButton job={job} artifact={artifact} />
        </p>
      ) : (
        <>
          <ErrorBox error={error}>Could not load the diff</ErrorBox>
          {files ? <DiffView files={files} /> : error ? null : <Loading what="the diff" />}
        </>
      )}
    </section>
  );
}

function DownloadButton({ job, artifact }: { job: JobView; artifact: ArtifactView }) {
  const api = useApi();
  const [state, setState] = useState<"idle" | "busy" | Error>("idle");
  const download = async (): Promise<void> => {
    setState("busy");
    try {
      const blob = await api.artifact(job.id, artifact.name);
      const base = artifact.name.split("/").pop() ?? "artifact";
      saveBlob(blob, artifact.name === "diff" ? `job-${job.id}.diff` : base);
      setState("idle");
    } catch (error) {
      setState(error instanceof Error ? error : new Error(String(error)));
    }
  };
  return (
    <>
      <button type="button" class="button small" onClick={download} disabled={state === "busy"} aria-label={`Download ${artifact.name}`}>
        {state === "busy" ? "Downloading…" : "Download"}
      </button>
      {state instanceof Error ? (
        <span class="error-text" role="alert">
          {" "}
          {state.message}
        </span>
      ) : null}
    </>
  );
}

export function ArtifactsSection({ job }: { job: JobView }) {
  if (job.artifacts.length === 0 && job.spec.outputs.paths.length === 0) return null;
  return (
    <section aria-labelledby="artifacts-title" class="card">
      <h2 id="artifacts-title">Artifacts</h2>
      {job.artifacts.length === 0 ? (
        <p class="muted">None yet{job.spec.outputs.paths.length ? ` (the job declares ${job.spec.outputs.paths.join(", ")})` : ""}.</p>
      ) : (
        <table class="table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col" class="num">
                Size
              </th>
              <th scope="col">SHA-256</th>
              <th scope="col">
                <span class="visually-hidden">Download</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {job.artifacts.map((artifact) => (
              <tr key={artifact.name}>
                <td>
                  <code>{artifact.name}</code>
                </td>
                <td class="num">{formatSize(artifact.size)}</td>
                <td>
                  <code title={artifact.sha256}>{artifact.sha256.slice(0, 16)}…</code>
                </td>
                <td>
                  <DownloadButton job={job} artifact={artifact} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
