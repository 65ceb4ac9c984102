/** The shell: sign-in gate, header and navigation, and the page for the current route. */
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Api } from "./api.ts";
import { ApiContext } from "./hooks.ts";
import { BatchPage } from "./pages/batch.tsx";
import { BatchesPage } from "./pages/batches.tsx";
import { ExecutorsPage } from "./pages/executors.tsx";
import { IndexesPage } from "./pages/indexes.tsx";
import { JobPage } from "./pages/job.tsx";
import { JobsPage } from "./pages/jobs.tsx";
import { QueuesPage } from "./pages/queues.tsx";
import { SignIn } from "./pages/sign-in.tsx";
import { onLinkClick, useRoute, type Route } from "./router.ts";
import { clearToken, readToken, saveToken } from "./session.ts";

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "jobs":
      return <JobsPage params={route.params} />;
    case "job":
      return <JobPage id={route.id} />;
    case "batches":
      return <BatchesPage />;
    case "batch":
      return <BatchPage name={route.name} version={route.version} />;
    case "indexes":
      return <IndexesPage />;
    case "executors":
      return <ExecutorsPage />;
    case "queues":
      return <QueuesPage />;
    case "not-found":
      return (
        <>
          <h1 tabIndex={-1}>Not found</h1>
          <p>
            Nothing lives at <code>{route.path}</code>. <a href="/jobs">See the jobs.</a>
          </p>
        </>
      );
  }
}

const NAV = [
  { href: "/jobs", label: "Jobs", pages: ["jobs", "job"] },
  { href: "/batches", label: "Batches", pages: ["batches", "batch"] },
  { href: "/indexes", label: "Indexes", pages: ["indexes"] },
  { href: "/executors", label: "Executors", pages: ["executors"] },
  { href: "/queues", label: "Queues", pages: ["queues"] },
] as const;

export function App() {
  const [token, setToken] = useState(readToken);
  const [notice, setNotice] = useState<string | undefined>();
  const route = useRoute();
  const firstRoute = useRef(true);

  const api = useMemo(
    () =>
      token
        ? new Api(token, () => {
            clearToken();
            setToken(null);
            setNotice("The coordinator no longer accepts the token this tab had (was it changed?). Sign in again.");
          })
        : null,
    [token],
  );

  // After in-app navigation, move focus to the new page's heading so screen readers announce it.
  const routeKey = route.page === "job" ? `job:${route.id}` : route.page === "batch" ? `batch:${route.name}:${route.version ?? ""}` : route.page;
  useEffect(() => {
    if (firstRoute.current) {
      firstRoute.current = false;
      return;
    }
    document.querySelector<HTMLElement>("main h1")?.focus();
  }, [routeKey]);

  if (!api) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(given) => {
          saveToken(given);
          setNotice(undefined);
          setToken(given);
        }}
      />
    );
  }

  const signOut = (): void => {
    clearToken();
    setNotice("Signed out.");
    setToken(null);
  };

  return (
    <ApiContext.Provider value={api}>
      <div class="shell" onClick={onLinkClick}>
        <a class="skip-link" href="#main">
          Skip to content
        </a>
        <header class="topbar">
          <a class="brand" href="/jobs">
            <img src="/assets/favicon.svg" alt="" width="22" height="22" />
            Airlock
          </a>
          <nav aria-label="Main">
            <ul>
              {NAV.map((item) => (
                <li key={item.href}>
                  <a href={item.href} aria-current={(item.pages as readonly string[]).includes(route.page) ? "page" : undefined}>
                    {item.label}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
          <button type="button" class="button small ghost" onClick={signOut}>
            Sign out
          </button>
        </header>
        <main id="main" tabIndex={-1}>
          <Page route={route} />
        </main>
      </div>
    </ApiContext.Provider>
  );
}
