/**
 * "Run again": submits the job's spec anew (POST /api/jobs) as a new job at the same commit.
 * The coordinator never shows secret values (the spec comes back masked), so a job that had
 * secrets or registry passwords can only run again once the person re-enters them here; the
 * masked placeholders are never submitted.
 */
import { useState } from "preact/hooks";
import type { JobView } from "../../../src/protocol/index.ts";
import { hiddenValues, specToInput } from "../../../src/protocol/spec-input.ts";
import { ApiError } from "../api.ts";
import { useApi } from "../hooks.ts";
import { navigate } from "../router.ts";
import { Dialog } from "./dialog.tsx";

export function RetryDialog({ job, open, onClose }: { job: JobView; open: boolean; onClose: () => void }) {
  const api = useApi();
  const hidden = hiddenValues(job.spec);
  const [values, setValues] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const fields = [
    ...hidden.secrets.map((name) => ({ id: `secret:${name}`, label: `Secret ${name}` })),
    ...hidden.registryHosts.map((host) => ({ id: `registry:${host}`, label: `Registry password for ${host}` })),
  ];

  const submit = async (event: Event): Promise<void> => {
    event.preventDefault();
    const missing = fields.filter((field) => !values[field.id]);
    if (missing.length > 0) {
      setError(`Enter ${missing.map((field) => field.label.toLowerCase()).join(", ")}: the coordinator does not show stored secrets, so they cannot be reused from here.`);
      return;
    }
    const input = specToInput(job.spec);
    input.secrets = Object.fromEntries(hidden.secrets.map((name) => [name, values[`secret:${name}`] ?? ""]));
    if (input.registryAuth) {
      input.registryAuth = Object.fromEntries(Object.entries(input.registryAuth).map(([host, auth]) => [host, { ...auth, password: values[`registry:${host}`] ?? "" }]));
    }
    setBusy(true);
    setError(undefined);
    try {
      const created = await api.submit(input);
      setValues({});
      onClose();
      navigate(`/jobs/${created.id}`);
    } catch (caught) {
      setError(caught instanceof ApiError || caught instanceof Error ? caught.message : String(caught));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Dialog title={`Run job ${job.id} again`} open={open} onClose={onClose}>
      <form onSubmit={submit} class="stack">
        <p>
          Submits this job's spec again as a new job in queue <strong>{job.queue}</strong>
          {job.repository ? (
            <>
              , on <strong>{job.repository}</strong> at the same commit <code>{job.commit?.slice(0, 12)}</code>
              {job.ref && job.ref !== job.commit ? ` (then the head of ${job.ref})` : ""}
            </>
          ) : null}
          .
        </p>
        {fields.length > 0 ? (
          <fieldset class="stack">
            <legend>This job used secrets</legend>
            <p class="muted">The coordinator never shows secret values, so they cannot be copied from the old job. Enter them again to run it.</p>
            {fields.map((field) => (
              <label key={field.id} class="field">
                <span>{field.label}</span>
                <input
                  type="password"
                  autoComplete="off"
                  required
                  value={values[field.id] ?? ""}
                  onInput={(event) => setValues({ ...values, [field.id]: event.currentTarget.value })}
                />
              </label>
            ))}
          </fieldset>
        ) : null}
        {error ? (
          <p class="error-box" role="alert">
            {error}
          </p>
        ) : null}
        <div class="actions">
          <button type="submit" class="button primary" disabled={busy}>
            {busy ? "Submitting…" : "Submit new job"}
          </button>
          <button type="button" class="button" onClick={onClose}>
            Close
          </button>
        </div>
      </form>
    </Dialog>
  );
}
