/** Small shared pieces: state badges, error boxes, relative times. */
import type { ComponentChildren } from "preact";
import type { EntryState, JobState } from "../../../src/protocol/index.ts";
import { formatAge, formatTime } from "../format.ts";

/** Every job state, in lifecycle order (checked against the protocol's type). */
export const JOB_STATES = ["queued", "processing", "completed", "failed", "errored", "canceled"] as const satisfies readonly JobState[];
type MissingState = Exclude<JobState, (typeof JOB_STATES)[number]>;
const _allStatesListed: MissingState extends never ? true : never = true;
void _allStatesListed;

export function isActive(state: JobState): boolean {
  return state === "queued" || state === "processing";
}

export function StateBadge({ state, cancelRequested = false }: { state: JobState | EntryState; cancelRequested?: boolean }) {
  const label = cancelRequested && state === "processing" ? "canceling" : state;
  return (
    <span class={`badge badge-${label}`}>
      <span class="badge-dot" aria-hidden="true" />
      {label}
    </span>
  );
}

export function ErrorBox({ error, children }: { error: Error | undefined; children?: ComponentChildren }) {
  if (!error) return null;
  return (
    <div class="error-box" role="alert">
      <strong>{children ?? "Something went wrong"}:</strong> {error.message}
    </div>
  );
}

export function Time({ iso, now }: { iso: string | null; now: number }) {
  if (!iso) return <span class="muted">–</span>;
  return (
    <time dateTime={iso} title={formatTime(iso)}>
      {formatAge(iso, now)}
    </time>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}
