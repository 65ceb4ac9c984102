/** One job: summary, actions, steps, the live log of the chosen step, diff, artifacts, spec. */
import { useEffect, useState } from "preact/hooks";
import type { EntryView, JobView } from "../../../src/protocol/index.ts";
import { ApiError, saveBlob } from "../api.ts";
import { ErrorBox, isActive, Loading, StateBadge, Time } from "../components/common.tsx";
import { Dialog } from "../components/dialog.tsx";
import { EgressSection } from "../components/egress.tsx";
import { ArtifactsSection, DiffSection } from "../components/job-outputs.tsx";
import { LogView } from "../components/log-view.tsx";
import { RetryDialog } from "../components/retry-dialog.tsx";
import { SpecView } from "../components/spec-view.tsx";
import { elapsed, formatDuration, shortSha } from "../format.ts";
import { useApi, useNow, useTitle } from "../hooks.ts";
import { JobStream } from "../job-stream.ts";

/**
 * The entry to show when the person has not picked one: the running one, else a failed one,
 * else the last step with output, else whatever has output (preparation, uploads).
 */
function autoEntry(job: JobView, stream: JobStream): string | undefined {
  const running = job.entries.find((entry) => entry.state === "running");
  if (running) return running.key;
  const failed = job.entries.find((entry) => entry.state === "failed");
  if (failed) return failed.key;
  const hasOutput = (entry: EntryView): boolean => (stream.buffers.get(entry.key)?.length ?? 0) > 0;
  const newestFirst = [...job.entries].reverse();
  const chosen = newestFirst.find((entry) => entry.kind === "step" && hasOutput(entry)) ?? newestFirst.find(hasOutput);
  return chosen?.key ?? job.entries.find((entry) => entry.kind === "step")?.key ?? job.entries[0]?.key;
}

function useJobStream(id: number): JobStream | undefined {
  const api = useApi();
  const [stream, setStream] = useState<JobStream | undefined>();
  const [, setVersion] = useState(0);
  useEffect(() => {
    const next = new JobStream(api, id);
    setStream(next);
    const unsubscribe = next.subscribe(() => setVersion(next.version));
    void next.run();
    return () => {
      unsubscribe();
      next.stop();
    };
  }, [api, id]);
  // Until the effect runs for a new id, the old job's stream must not show.
  return stream?.id === id ? stream : undefined;
}

function Summary({ job, now }: { job: JobView; now: number }) {
  const duration = elapsed(job.startedAt, job.finishedAt, now);
  return (
    <dl class="summary">
      <div>
        <dt>Queue</dt>
        <dd>{job.queue}</dd>
      </div>
      <div>
        <dt>Repository</dt>
        <dd>{job.repository ?? <span class="muted">none (empty workspace)</span>}</dd>
      </div>
      <div>
        <dt>Commit</dt>
        <dd>
          {job.commit ? <code title={job.commit}>{shortSha(job.commit)}</code> : <span class="muted">–</span>}
          {job.ref && job.ref !== job.commit ? <span class="muted"> ({job.ref})</span> : null}
        </dd>
      </div>
      <div>
        <dt>Isolation</dt>
        <dd>at least {job.isolation}</dd>
      </div>
      <div>
        <dt>Attempt</dt>
        <dd>
          {job.attempt} of {job.maxAttempts}
        </dd>
      </div>
      <div>
        <dt>Executor</dt>
        <dd>{job.executorName ?? <span class="muted">–</span>}</dd>
      </div>
      <div>
        <dt>Created</dt>
        <dd>
          <Time iso={job.createdAt} now={now} />
        </dd>
      </div>
      <div>
        <dt>Duration</dt>
        <dd>{duration === null ? <span class="muted">not started</span> : formatDuration(duration)}</dd>
      </div>
    </dl>
  );
}

function Steps({ job, stream, selected, onSelect, now }: { job: JobView; stream: JobStream; selected: string | undefined; onSelect: (key: string) => void; now: number }) {
  const duration = (entry: EntryView): string => {
    if (entry.durationMs !== null) return formatDuration(entry.durationMs);
    const running = elapsed(entry.startedAt, entry.finishedAt, now);
    return running === null ? "–" : formatDuration(running);
  };
  return (
    <table class="table steps">
      <caption class="visually-hidden">Steps of job {job.id}; choose one to show its log</caption>
      <thead>
        <tr>
          <th scope="col">Step</th>
          <th scope="col">State</th>
          <th scope="col" class="num">
            Exit code
          </th>
          <th scope="col" class="num">
            Duration
          </th>
          <th scope="col" class="num">
            Log lines
          </th>
        </tr>
      </thead>
      <tbody>
        {job.entries.map((entry) => (
          <tr key={entry.key} class={entry.key === selected ? "selected" : undefined}>
            <th scope="row">
              <button type="button" class="link-button" aria-pressed={entry.key === selected} onClick={() => onSelect(entry.key)}>
                {entry.key}
              </button>
              {entry.kind !== "step" && entry.key !== entry.kind ? <span class="muted"> ({entry.kind})</span> : null}
              {entry.message ? <div class="entry-message">{entry.message}</div> : null}
            </th>
            <td>
              <StateBadge state={entry.state} />
            </td>
            <td class="num">{entry.exitCode ?? "–"}</td>
            <td class="num">{duration(entry)}</td>
            <td class="num">{(stream.buffers.get(entry.key)?.length ?? 0).toLocaleString()}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Actions({ job, stream }: { job: JobView; stream: JobStream }) {
  const api = useApi();
  const [dialog, setDialog] = useState<"cancel" | "retry" | undefined>();
  const [status, setStatus] = useState("");
  const [error, setError] = useState<Error | undefined>();
  const cancel = async (): Promise<void> => {
    setDialog(undefined);
    setError(undefined);
    try {
      const view = await api.cancel(job.id);
      stream.setView(view);
      setStatus(view.state === "canceled" ? `Job ${job.id} canceled.` : `Cancel requested: the executor is stopping job ${job.id}.`);
    } catch (caught) {
      setError(caught instanceof Error ? caught : new Error(String(caught)));
    }
  };
  const cancellable = isActive(job.state) && !job.cancelRequested;
  return (
    <div class="actions">
      {cancellable ? (
        <button type="button" class="button danger" onClick={() => setDialog("cancel")}>
          Cancel job
        </button>
      ) : null}
      <button type="button" class="button" onClick={() => setDialog("retry")}>
        Run again
      </button>
      <span class="muted" role="status">
        {status}
      </span>
      <ErrorBox error={error}>Could not cancel</ErrorBox>
      <Dialog title={`Cancel job ${job.id}?`} open={dialog === "cancel"} onClose={() => setDialog(undefined)}>
        <p>{job.state === "queued" ? "The job has not started; it leaves the queue at once." : "Its executor stops the running step and everything it started."}</p>
        <div class="actions">
          <button type="button" class="button danger" onClick={cancel}>
            Yes, cancel it
          </button>
          <button type="button" class="button" onClick={() => setDialog(undefined)}>
            No, keep it
          </button>
        </div>
      </Dialog>
      <RetryDialog job={job} open={dialog === "retry"} onClose={() => setDialog(undefined)} />
    </div>
  );
}

function StreamStatusLine({ stream }: { stream: JobStream }) {
  const text = { connecting: "Connecting…", live: "Live", reconnecting: "Connection lost; reconnecting…", ended: "", failed: "" }[stream.status];
  if (!text) return null;
  return (
    <span class={`stream-status stream-${stream.status}`} role="status">
      {text}
    </span>
  );
}

export function JobPage({ id }: { id: number }) {
  const api = useApi();
  const stream = useJobStream(id);
  const now = useNow(1000);
  const [picked, setPicked] = useState<string | undefined>();
  const [downloadError, setDownloadError] = useState<Error | undefined>();
  useTitle(`Job ${id}`);
  const job = stream?.view;

  if (!stream || !job) {
    if (stream?.status === "failed") {
      const missing = stream.error instanceof ApiError && stream.error.status === 404;
      return (
        <>
          <h1 tabIndex={-1}>Job {id}</h1>
          <ErrorBox error={stream.error}>{missing ? "No such job" : "Could not load the job"}</ErrorBox>
        </>
      );
    }
    return (
      <>
        <h1 tabIndex={-1}>Job {id}</h1>
        {stream?.error ? <ErrorBox error={stream.error}>Could not reach the job's event stream</ErrorBox> : <Loading what={`job ${id}`} />}
      </>
    );
  }

  const selected = picked && job.entries.some((entry) => entry.key === picked) ? picked : autoEntry(job, stream);
  const entry = job.entries.find((candidate) => candidate.key === selected);
  const buffer = selected ? stream.buffer(selected) : undefined;
  const downloadLog = async (): Promise<void> => {
    if (!selected) return;
    setDownloadError(undefined);
    try {
      saveBlob(await api.log(job.id, selected), `job-${job.id}-${selected}.log`);
    } catch (error) {
      setDownloadError(error instanceof Error ? error : new Error(String(error)));
    }
  };

  return (
    <>
      <nav aria-label="Breadcrumb" class="breadcrumb">
        <a href="/jobs">Jobs</a> <span aria-hidden="true">/</span> <span aria-current="page">Job {job.id}</span>
      </nav>
      <div class="page-heading">
        <h1 tabIndex={-1}>Job {job.id}</h1>
        <StateBadge state={job.state} cancelRequested={job.cancelRequested} />
        <StreamStatusLine stream={stream} />
      </div>
      {job.failureMessage ? (
        <p class={job.state === "canceled" ? "notice" : "error-box"} role={job.state === "canceled" ? undefined : "alert"}>
          {job.failureMessage}
        </p>
      ) : null}
      {stream.attemptNotice ? <p class="notice">Attempt {stream.attemptNotice} started; the logs below are from it.</p> : null}
      <Actions job={job} stream={stream} />
      <section aria-labelledby="summary-title" class="card">
        <h2 id="summary-title" class="visually-hidden">
          Summary
        </h2>
        <Summary job={job} now={now} />
      </section>
      <section aria-labelledby="steps-title" class="card">
        <h2 id="steps-title">Steps</h2>
        <Steps job={job} stream={stream} selected={selected} onSelect={setPicked} now={now} />
      </section>
      {selected && buffer ? (
        <section aria-labelledby="log-title" class="card">
          <div class="section-heading">
            <h2 id="log-title">
              Log: <code>{selected}</code>
            </h2>
            <button type="button" class="button small" onClick={downloadLog} disabled={!entry || (entry.size === 0 && buffer.length === 0)}>
              Download log
            </button>
          </div>
          <ErrorBox error={downloadError}>Could not download the log</ErrorBox>
          <LogView
            buffer={buffer}
            version={buffer.version}
            label={`Log of ${selected}`}
            emptyText={entry?.state === "pending" ? "This step has not started yet." : entry?.state === "running" ? "No output yet." : "No output."}
          />
        </section>
      ) : null}
      <DiffSection job={job} />
      <EgressSection job={job} />
      <ArtifactsSection job={job} />
      <SpecView spec={job.spec} />
    </>
  );
}
