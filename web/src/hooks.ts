/** Shared hooks: the API in context, polling that pauses in hidden tabs, a ticking clock. */
import { createContext } from "preact";
import { useCallback, useContext, useEffect, useRef, useState } from "preact/hooks";
import type { Api } from "./api.ts";

export const ApiContext = createContext<Api | null>(null);

export function useApi(): Api {
  const api = useContext(ApiContext);
  if (!api) throw new Error("useApi outside a signed-in view");
  return api;
}

/** Resolves when the page is visible (at once if it is). */
function whenVisible(signal: AbortSignal): Promise<void> {
  if (document.visibilityState === "visible") return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      if (document.visibilityState !== "visible" && !signal.aborted) return;
      document.removeEventListener("visibilitychange", done);
      resolve();
    };
    document.addEventListener("visibilitychange", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

export interface Polled<T> {
  data: T | undefined;
  error: Error | undefined;
  /** True until the first answer for the current inputs. */
  loading: boolean;
  refresh: () => void;
}

/**
 * Loads now and then every `intervalMs` while the tab is visible; one request at a time, the
 * next timed from the end of the last, so a slow coordinator is never piled on.
 */
export function usePolling<T>(load: (signal: AbortSignal) => Promise<T>, intervalMs: number, deps: unknown[]): Polled<T> {
  const [state, setState] = useState<{ data: T | undefined; error: Error | undefined; loading: boolean }>({ data: undefined, error: undefined, loading: true });
  const wake = useRef<() => void>(() => undefined);
  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    setState((previous) => ({ ...previous, loading: true }));
    void (async () => {
      while (!signal.aborted) {
        await whenVisible(signal);
        if (signal.aborted) return;
        try {
          const data = await load(signal);
          if (!signal.aborted) setState({ data, error: undefined, loading: false });
        } catch (error) {
          if (signal.aborted) return;
          setState((previous) => ({ ...previous, error: error instanceof Error ? error : new Error(String(error)), loading: false }));
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, intervalMs);
          wake.current = () => {
            clearTimeout(timer);
            resolve();
          };
          signal.addEventListener("abort", () => wake.current(), { once: true });
        });
      }
    })();
    return () => controller.abort();
  }, deps);
  const refresh = useCallback(() => wake.current(), []);
  return { ...state, refresh };
}

/** The current time, updated every `intervalMs` (for ages and running durations). */
export function useNow(intervalMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}

export function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · Airlock`;
  }, [title]);
}
