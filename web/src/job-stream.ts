/**
 * One job, live: the coordinator's event stream (GET /api/jobs/:id/events) read into the job's
 * view and one LogBuffer per log entry.
 *
 * States: connecting -> live -> ended (the job is terminal and everything was sent), or
 * -> reconnecting (the stream broke: retry with backoff, resuming at the byte offsets already
 * held, so nothing is shown twice) -> live ..., or -> failed (the job does not exist, or the
 * token was refused). A new attempt clears the logs: they belong to the attempt.
 * Listeners are told of changes at most once per animation frame.
 */
import type { JobView, LogEvent } from "../../src/protocol/index.ts";
import { ApiError, type Api } from "./api.ts";
import { LogBuffer } from "./log-buffer.ts";

export type StreamStatus = "connecting" | "live" | "reconnecting" | "ended" | "failed";

export class JobStream {
  view: JobView | undefined;
  status: StreamStatus = "connecting";
  error: Error | undefined;
  /** Set when a new attempt started while watching (its logs replaced the old ones). */
  attemptNotice: number | undefined;
  /** Bumped on every change. */
  version = 0;
  readonly buffers = new Map<string, LogBuffer>();
  private readonly offsets = new Map<string, number>();
  private readonly listeners = new Set<() => void>();
  private readonly controller = new AbortController();
  private readonly api: Api;
  readonly id: number;
  private frame = 0;

  constructor(api: Api, id: number) {
    this.api = api;
    this.id = id;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  buffer(key: string): LogBuffer {
    let buffer = this.buffers.get(key);
    if (!buffer) this.buffers.set(key, (buffer = new LogBuffer()));
    return buffer;
  }

  stop(): void {
    this.controller.abort();
    cancelAnimationFrame(this.frame);
    this.listeners.clear();
  }

  /** Takes a view from elsewhere (e.g. the answer to a cancel) until the stream sends a newer one. */
  setView(view: JobView): void {
    this.view = view;
    this.changed();
  }

  private changed(): void {
    this.version += 1;
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      for (const listener of this.listeners) listener();
    });
  }

  private apply(event: string, data: string): boolean {
    if (event === "job") {
      this.view = JSON.parse(data) as JobView;
    } else if (event === "log") {
      const log = JSON.parse(data) as LogEvent;
      // A resumed stream starts at our offsets; anything older is already shown.
      if (log.end <= (this.offsets.get(log.key) ?? 0)) return false;
      this.buffer(log.key).append(log.text);
      this.offsets.set(log.key, log.end);
    } else if (event === "attempt") {
      this.attemptNotice = (JSON.parse(data) as { attempt: number }).attempt;
      for (const buffer of this.buffers.values()) buffer.clear();
      this.offsets.clear();
    } else if (event === "end") {
      this.status = "ended";
    } else {
      return false;
    }
    return true;
  }

  async run(): Promise<void> {
    const { signal } = this.controller;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const from = [...this.offsets].map(([key, offset]) => `${key}:${offset}`).join(",");
        for await (const { event, data } of this.api.events(this.id, from, signal)) {
          failures = 0;
          if (this.status !== "live" && this.status !== "ended") {
            this.status = "live";
            this.error = undefined;
          }
          if (this.apply(event, data)) this.changed();
          if (this.status === "ended") return;
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 404 || error.status === 400)) {
          this.status = "failed";
          this.error = error;
          this.changed();
          return;
        }
        this.error = error instanceof Error ? error : new Error(String(error));
      }
      if (signal.aborted) return;
      failures += 1;
      this.status = "reconnecting";
      this.changed();
      await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 500 * 2 ** Math.min(failures, 5))));
    }
  }
}
