/** Sign-in: the API token is checked against the coordinator before anything else is shown. */
import { useState } from "preact/hooks";
import { Api, ApiError } from "../api.ts";
import { useTitle } from "../hooks.ts";

export function SignIn({ notice, onSignedIn }: { notice: string | undefined; onSignedIn: (token: string) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  useTitle("Sign in");

  const submit = async (event: Event): Promise<void> => {
    event.preventDefault();
    const given = token.trim();
    if (!given) {
      setError("Enter the API token.");
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      // Any API call proves the token; this one is cheap.
      await new Api(given, () => undefined).queues();
      onSignedIn(given);
    } catch (caught) {
      if (caught instanceof ApiError && caught.status === 401) {
        setError("The coordinator refused this token. Use its API token: the file api-token in the coordinator's data directory, or the value given with --api-token.");
      } else {
        setError(caught instanceof Error ? caught.message : String(caught));
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="sign-in">
      <form class="card stack" onSubmit={submit} aria-labelledby="sign-in-title" noValidate>
        <h1 id="sign-in-title">Sign in to Airlock</h1>
        {notice && !error ? (
          <p class="notice" role="status">
            {notice}
          </p>
        ) : null}
        <label class="field">
          <span>API token</span>
          <input
            type="password"
            name="token"
            autoComplete="current-password"
            autoFocus
            required
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? "sign-in-error" : "sign-in-help"}
            value={token}
            onInput={(event) => setToken(event.currentTarget.value)}
          />
        </label>
        <p id="sign-in-help" class="muted">
          The token stays in this browser tab only (session storage) and is sent to this coordinator with each request.
        </p>
        {error ? (
          <p id="sign-in-error" class="error-box" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" class="button primary" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
