/** The jobs list: filters (kept in the URL), refreshed every few seconds while the tab is visible. */
import { useId, useState } from "preact/hooks";
import type { JobSummary } from "../../../src/protocol/index.ts";
import { ErrorBox, JOB_STATES, Loading, StateBadge, Time } from "../components/common.tsx";
import { elapsed, formatDuration, shortSha } from "../format.ts";
import { useApi, useNow, usePolling, useTitle } from "../hooks.ts";
import { navigate } from "../router.ts";

const REFRESH_MS = 2000;
const PAGE = 50;
const MAX_LIMIT = 500;

interface Filters {
  state: string;
  queue: string;
  repository: string;
}

function filtersFrom(params: URLSearchParams): Filters {
  return { state: params.get("state") ?? "", queue: params.get("queue") ?? "", repository: params.get("repository") ?? "" };
}

function hrefFor(filters: Filters): string {
  const params = new URLSearchParams(Object.entries(filters).filter(([, value]) => value !== ""));
  const search = params.toString();
  return search ? `/jobs?${search}` : "/jobs";
}

function FilterSelect({ label, name, value, options, onChange }: { label: string; name: string; value: string; options: string[]; onChange: (value: string) => void }) {
  const all = value && !options.includes(value) ? [value, ...options] : options;
  const id = useId();
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <select id={id} name={name} value={value} onChange={(event) => onChange(event.currentTarget.value)}>
        <option value="">All</option>
        {all.map((option) => (
          <option key={option} value={option}>
            {option}
          </option>
        ))}
      </select>
    </div>
  );
}

function JobRow({ job, now }: { job: JobSummary; now: number }) {
  const duration = elapsed(job.startedAt, job.finishedAt, now);
  return (
    <tr>
      <th scope="row">
        <a href={`/jobs/${job.id}`}>#{job.id}</a>
      </th>
      <td>
        <StateBadge state={job.state} cancelRequested={job.cancelRequested} />
      </td>
      <td>{job.queue}</td>
      <td>{job.repository ?? <span class="muted">–</span>}</td>
      <td>{job.commit ? <code title={job.ref ? `${job.commit} (${job.ref})` : job.commit}>{shortSha(job.commit).slice(0, 10)}</code> : <span class="muted">–</span>}</td>
      <td class="num">
        {job.attempt}/{job.maxAttempts}
      </td>
      <td>
        <Time iso={job.createdAt} now={now} />
      </td>
      <td class="num">{duration === null ? <span class="muted">–</span> : formatDuration(duration)}</td>
    </tr>
  );
}

export function JobsPage({ params }: { params: URLSearchParams }) {
  const api = useApi();
  const now = useNow(1000);
  const filters = filtersFrom(params);
  const [limit, setLimit] = useState(PAGE);
  useTitle("Jobs");
  const jobs = usePolling(
    (signal) => api.listJobs({ state: filters.state, queue: filters.queue, repository: filters.repository, limit }, signal),
    REFRESH_MS,
    [filters.state, filters.queue, filters.repository, limit],
  );
  // Names for the filter menus change rarely: refresh them slowly.
  const names = usePolling(
    async (signal) => {
      const [queues, executors, repositories] = await Promise.all([api.queues(signal), api.executors(signal), api.repositories(signal)]);
      return {
        queues: [...new Set([...queues.map((queue) => queue.name), ...executors.flatMap((executor) => executor.queues)])],
        repositories: repositories.map((repository) => repository.name),
      };
    },
    30_000,
    [],
  );
  const queueNames = [...new Set([...(names.data?.queues ?? []), ...(jobs.data ?? []).map((job) => job.queue)])].sort();
  const repositoryNames = [...(names.data?.repositories ?? [])].sort();
  const setFilter = (key: keyof Filters) => (value: string) => {
    setLimit(PAGE);
    navigate(hrefFor({ ...filters, [key]: value }), { replace: true });
  };
  const filtered = Object.values(filters).some((value) => value !== "");

  return (
    <>
      <div class="page-heading">
        <h1 tabIndex={-1}>Jobs</h1>
        <span class="muted live-hint">Updates every {REFRESH_MS / 1000} s</span>
      </div>
      <form class="filters" role="search" aria-label="Filter jobs" onSubmit={(event) => event.preventDefault()}>
        <FilterSelect label="State" name="state" value={filters.state} options={[...JOB_STATES]} onChange={setFilter("state")} />
        <FilterSelect label="Queue" name="queue" value={filters.queue} options={queueNames} onChange={setFilter("queue")} />
        <FilterSelect label="Repository" name="repository" value={filters.repository} options={repositoryNames} onChange={setFilter("repository")} />
        {filtered ? (
          <button type="button" class="button small" onClick={() => navigate("/jobs", { replace: true })}>
            Clear filters
          </button>
        ) : null}
      </form>
      <ErrorBox error={jobs.error}>Could not load jobs</ErrorBox>
      {jobs.data === undefined ? (
        jobs.error ? null : <Loading what="jobs" />
      ) : jobs.data.length === 0 ? (
        <p class="empty">{filtered ? "No jobs match these filters." : "No jobs yet. Submit one with `airlock submit job.yaml`."}</p>
      ) : (
        <>
          <table class="table jobs">
            <caption class="visually-hidden">Jobs, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">State</th>
                <th scope="col">Queue</th>
                <th scope="col">Repository</th>
                <th scope="col">Commit</th>
                <th scope="col" class="num">
                  Attempt
                </th>
                <th scope="col">Age</th>
                <th scope="col" class="num">
                  Duration
                </th>
              </tr>
            </thead>
            <tbody>
              {jobs.data.map((job) => (
                <JobRow key={job.id} job={job} now={now} />
              ))}
            </tbody>
          </table>
          {jobs.data.length >= limit && limit < MAX_LIMIT ? (
            <button type="button" class="button" onClick={() => setLimit(Math.min(MAX_LIMIT, limit + PAGE))}>
              Show {PAGE} more
            </button>
          ) : null}
        </>
      )}
    </>
  );
}
