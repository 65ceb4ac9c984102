/**
 * Client-side routes over the History API. The coordinator serves index.html at each of these
 * paths (UI_ROUTES in src/coordinator/routes/web.ts): keep the two lists in step.
 */
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "jobs"; params: URLSearchParams }
  | { page: "job"; id: number }
  | { page: "batches" }
  | { page: "batch"; name: string; version: number | undefined }
  | { page: "indexes" }
  | { page: "executors" }
  | { page: "queues" }
  | { page: "not-found"; path: string };

export function parseRoute(pathname: string, search: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/" || path === "/jobs") return { page: "jobs", params: new URLSearchParams(search) };
  const job = /^\/jobs\/(\d+)$/.exec(path);
  if (job) return { page: "job", id: Number(job[1]) };
  if (path === "/batches") return { page: "batches" };
  const batch = /^\/batches\/([A-Za-z0-9][A-Za-z0-9._-]*)$/.exec(path);
  if (batch) {
    const version = Number(new URLSearchParams(search).get("version") ?? "");
    return { page: "batch", name: batch[1] ?? "", version: Number.isInteger(version) && version > 0 ? version : undefined };
  }
  if (path === "/indexes") return { page: "indexes" };
  if (path === "/executors") return { page: "executors" };
  if (path === "/queues") return { page: "queues" };
  return { page: "not-found", path };
}

const CHANGE = "airlock:navigate";

export function navigate(href: string, options: { replace?: boolean } = {}): void {
  if (options.replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  window.dispatchEvent(new Event(CHANGE));
}

export function useRoute(): Route {
  const read = (): Route => parseRoute(location.pathname, location.search);
  const [route, setRoute] = useState<Route>(read);
  useEffect(() => {
    const update = (): void => setRoute(read());
    window.addEventListener("popstate", update);
    window.addEventListener(CHANGE, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(CHANGE, update);
    };
  }, []);
  return route;
}

/** Handles a click on an in-app link without a page load (modified clicks keep their meaning). */
export function onLinkClick(event: MouseEvent): void {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = (event.target as Element | null)?.closest("a");
  if (!anchor || anchor.target || anchor.hasAttribute("download") || anchor.origin !== location.origin) return;
  // An anchor on this page: let the browser scroll to it.
  if (anchor.hash && anchor.pathname === location.pathname && anchor.search === location.search) return;
  event.preventDefault();
  navigate(anchor.pathname + anchor.search + anchor.hash);
}
