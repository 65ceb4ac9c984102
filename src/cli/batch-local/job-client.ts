/**
 * The executor's client seam (`CoordinatorClient` / `JobClient`, src/executor/client.ts), done
 * in-process for `airlock batch run --local`: the executor's own JobRun drives a job through it
 * exactly as it would against a coordinator, but log bytes, step records, artifacts and the
 * outcome stay in this process's memory (and log text is handed to a listener as it arrives).
 * Only the git fetch leaves the process: to the coordinator's git endpoint, with the user token.
 *
 * One LocalJob per job; it is written by one JobRun only, so no locking is needed. Log appends
 * arrive at byte offsets (the shipper retries the same bytes at the same offset after a failed
 * request, which cannot happen here, but an append at an offset already held is still stored once).
 */
import type { AttemptOutcome, HeartbeatResponse, JobPayload, LogAppendResponse, StepFinishRequest } from "../../protocol/index.ts";
import { ValidationError } from "../../protocol/index.ts";
import type { CoordinatorClient, JobClient } from "../../executor/client.ts";

export interface LocalEntry {
  key: string;
  state: "running" | "completed" | "failed" | "skipped";
  exitCode: number | null;
  durationMs: number | null;
  message?: string | undefined;
  startedAt: number;
  chunks: Buffer[];
  size: number;
}

export interface LocalJobListener {
  /** An entry (prepare, a step, finalize) started. */
  onEntryStart?(job: LocalJob, key: string): void;
  onEntryFinish?(job: LocalJob, entry: LocalEntry): void;
  /** Log bytes of an entry, already redacted by the executor's log shipper. */
  onLog?(job: LocalJob, key: string, data: Buffer): void;
}

/** Everything one job produced, kept in memory. */
export class LocalJob {
  readonly payload: JobPayload;
  readonly entries = new Map<string, LocalEntry>();
  readonly artifacts = new Map<string, Buffer>();
  outcome: AttemptOutcome | undefined;
  message: string | undefined;
  /** Set to make the next log append tell the runner to stop (as a coordinator's cancel would). */
  cancelRequested = false;
  private readonly listener: LocalJobListener;
  private readonly remote: { url: string; authHeader: string };

  constructor(payload: JobPayload, remote: { url: string; authHeader: string }, listener: LocalJobListener) {
    this.payload = payload;
    this.remote = remote;
    this.listener = listener;
  }

  /** The whole log of one entry. */
  log(key: string): Buffer {
    return Buffer.concat(this.entries.get(key)?.chunks ?? []);
  }

  client(): JobClient {
    return {
      appendLog: async (key: string, offset: number, data: Uint8Array): Promise<LogAppendResponse> => {
        const entry = this.entries.get(key) ?? this.open(key, false);
        if (offset > entry.size) throw new ValidationError(`log append for ${key} at offset ${offset} leaves a gap (stored ${entry.size})`);
        const fresh = Buffer.from(data).subarray(entry.size - offset);
        if (fresh.length > 0) {
          entry.chunks.push(fresh);
          entry.size += fresh.length;
          this.listener.onLog?.(this, key, fresh);
        }
        return { size: entry.size, cancel: this.cancelRequested };
      },
      startStep: async (key: string): Promise<void> => {
        this.open(key, true);
      },
      finishStep: async (key: string, result: StepFinishRequest): Promise<void> => {
        const entry = this.entries.get(key) ?? this.open(key, false);
        entry.state = result.state;
        entry.exitCode = result.exitCode;
        entry.durationMs = result.durationMs;
        entry.message = result.message;
        this.listener.onEntryFinish?.(this, entry);
      },
      uploadArtifact: async (name: string, body: AsyncIterable<Uint8Array>): Promise<void> => {
        const parts: Buffer[] = [];
        for await (const chunk of body) parts.push(Buffer.from(chunk));
        this.artifacts.set(name, Buffer.concat(parts));
      },
      finish: async (outcome: AttemptOutcome, message?: string): Promise<void> => {
        this.outcome = outcome;
        this.message = message;
      },
      gitRemote: () => this.remote,
    };
  }

  private open(key: string, announce: boolean): LocalEntry {
    const existing = this.entries.get(key);
    if (existing) return existing;
    const entry: LocalEntry = { key, state: "running", exitCode: null, durationMs: null, startedAt: Date.now(), chunks: [], size: 0 };
    this.entries.set(key, entry);
    if (announce) this.listener.onEntryStart?.(this, key);
    return entry;
  }
}

/**
 * The `CoordinatorClient` JobRun is given: only `forJob` is used by a job run; the poll-loop
 * calls (dequeue, heartbeat) have no meaning without a coordinator and refuse.
 */
export class LocalCoordinatorClient implements CoordinatorClient {
  readonly currentUrl: string;
  private readonly jobs = new Map<number, LocalJob>();

  constructor(url: string) {
    this.currentUrl = url;
  }

  register(job: LocalJob): void {
    this.jobs.set(job.payload.id, job);
  }

  forJob(job: JobPayload): JobClient {
    const local = this.jobs.get(job.id);
    if (!local) throw new ValidationError(`job ${job.id} is not a local job`);
    return local.client();
  }

  async authCheck(): Promise<{ version: string; leaseMs: number }> {
    throw new ValidationError("a local run has no coordinator lease");
  }

  async dequeue(): Promise<JobPayload | undefined> {
    throw new ValidationError("a local run dequeues nothing");
  }

  async heartbeat(): Promise<HeartbeatResponse> {
    throw new ValidationError("a local run sends no heartbeats");
  }

  async close(): Promise<void> {
    this.jobs.clear();
  }
}
