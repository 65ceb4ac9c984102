/** A batch version's entries by state ("12 completed, 1 failed, 3 cached"), as small badges. */
import { JOB_STATES } from "./common.tsx";

export function BatchCounts({ counts, total }: { counts: Record<string, number>; total: number }) {
  const states = JOB_STATES.filter((state) => (counts[state] ?? 0) > 0);
  const cached = counts.cached ?? 0;
  if (total === 0) return <span class="muted">no entries</span>;
  return (
    <ul class="inline-list batch-counts" aria-label={`${total} entries by state`}>
      {states.map((state) => (
        <li key={state}>
          <span class={`badge badge-${state}`}>
            <span class="badge-dot" aria-hidden="true" />
            {counts[state]} {state}
          </span>
        </li>
      ))}
      {cached > 0 ? (
        <li>
          <span class="badge badge-cached">{cached} cached</span>
        </li>
      ) : null}
    </ul>
  );
}
