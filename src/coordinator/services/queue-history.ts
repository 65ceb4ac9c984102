/**
 * Per-queue history in time buckets (depth, oldest wait, pickup latency, throughput), computed
 * from the jobs' own timestamps through the JobStore, so every backend supports it unchanged.
 *
 * The scan reads the jobs that can matter, newest first: every job still queued or processing
 * (however old), and every job created since `coverageFrom` (one window before the window starts,
 * so jobs that waited or ran into the window are seen). It stops at MAX_SCAN jobs and says so.
 * Results are cached for a few seconds: every open queues page polls, and the figures move
 * by the minute.
 */
import type { Clock } from "../../common/clock.ts";
import { isTerminal, type JobState, type QueueBucket, type QueueHistory, type QueueHistoryQuery } from "../../protocol/index.ts";
import type { JobFilter, JobRecord, JobStore } from "../../store/index.ts";

const PAGE = 500;
const MAX_SCAN = 20_000;
const CACHE_MS = 3000;

interface Window {
  /** Start of the first bucket, bucket width, bucket count, and the sampling instant of the last. */
  first: number;
  bucketMs: number;
  count: number;
  now: number;
}

interface Accumulator {
  depth: number[];
  oldestWaitMs: (number | null)[];
  pickups: number[][];
  ended: Record<"completed" | "failed" | "errored" | "canceled", number[]>;
}

function accumulator(count: number): Accumulator {
  const zeros = () => new Array<number>(count).fill(0);
  return {
    depth: zeros(),
    oldestWaitMs: new Array<number | null>(count).fill(null),
    pickups: Array.from({ length: count }, () => []),
    ended: { completed: zeros(), failed: zeros(), errored: zeros(), canceled: zeros() },
  };
}

/** The instant a bucket's depth is sampled: its last millisecond, or now for the current one. */
function sampleAt(window: Window, index: number): number {
  return Math.min(window.first + (index + 1) * window.bucketMs - 1, window.now);
}

function bucketOf(window: Window, at: number): number | undefined {
  const index = Math.floor((at - window.first) / window.bucketMs);
  return index >= 0 && index < window.count ? index : undefined;
}

/** When a job stopped waiting: its claim, or its end (canceled while queued), or never. */
function waitEnd(job: JobRecord): number {
  if (job.state === "queued") return Number.POSITIVE_INFINITY;
  // A requeued attempt keeps its previous claim time until claimed again: only a claim after
  // the latest queueing ends the wait.
  if (job.startedAt !== null && job.startedAt >= job.queuedAt) return job.startedAt;
  return job.finishedAt ?? Number.POSITIVE_INFINITY;
}

function add(acc: Accumulator, window: Window, job: JobRecord): void {
  const end = waitEnd(job);
  const firstIndex = Math.max(0, Math.ceil((job.queuedAt - window.first + 1) / window.bucketMs) - 1);
  for (let index = firstIndex; index < window.count; index += 1) {
    const at = sampleAt(window, index);
    if (at < job.queuedAt) continue;
    if (at >= end) break;
    acc.depth[index] = (acc.depth[index] ?? 0) + 1;
    acc.oldestWaitMs[index] = Math.max(acc.oldestWaitMs[index] ?? 0, at - job.queuedAt);
  }
  if (job.state !== "queued" && job.startedAt !== null && job.startedAt >= job.queuedAt) {
    const index = bucketOf(window, job.startedAt);
    if (index !== undefined) acc.pickups[index]?.push(job.startedAt - job.queuedAt);
  }
  if (job.finishedAt !== null && isEnded(job.state)) {
    const index = bucketOf(window, job.finishedAt);
    const counts = acc.ended[job.state];
    if (index !== undefined) counts[index] = (counts[index] ?? 0) + 1;
  }
}

function isEnded(state: JobState): state is keyof Accumulator["ended"] {
  return isTerminal(state);
}

function median(sorted: number[]): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.ceil(sorted.length / 2) - 1] ?? null;
}

/** Buckets for each queue the jobs belong to, oldest bucket first. Pure: exported for tests. */
export function bucketJobs(jobs: Iterable<JobRecord>, window: Window): QueueHistory["queues"] {
  const byQueue = new Map<string, Accumulator>();
  for (const job of jobs) {
    let acc = byQueue.get(job.queue);
    if (!acc) byQueue.set(job.queue, (acc = accumulator(window.count)));
    add(acc, window, job);
  }
  return [...byQueue.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, acc]) => ({
      name,
      buckets: Array.from({ length: window.count }, (_, index): QueueBucket => {
        const pickups = (acc.pickups[index] ?? []).sort((a, b) => a - b);
        return {
          start: new Date(window.first + index * window.bucketMs).toISOString(),
          depth: acc.depth[index] ?? 0,
          oldestWaitMs: acc.oldestWaitMs[index] ?? null,
          claimed: pickups.length,
          pickupP50Ms: median(pickups),
          pickupMaxMs: pickups.at(-1) ?? null,
          completed: acc.ended.completed[index] ?? 0,
          failed: acc.ended.failed[index] ?? 0,
          errored: acc.ended.errored[index] ?? 0,
          canceled: acc.ended.canceled[index] ?? 0,
        };
      }),
    }));
}

/** Buckets aligned to multiples of their width, the last one holding `now`. */
export function windowFor(query: QueueHistoryQuery, now: number): Window {
  const count = Math.max(1, Math.ceil(query.window / query.bucket));
  const end = (Math.floor(now / query.bucket) + 1) * query.bucket;
  return { first: end - count * query.bucket, bucketMs: query.bucket, count, now };
}

export class QueueHistoryService {
  private readonly store: JobStore;
  private readonly clock: Clock;
  private readonly cache = new Map<string, { at: number; value: Promise<QueueHistory> }>();

  constructor(store: JobStore, clock: Clock) {
    this.store = store;
    this.clock = clock;
  }

  history(query: QueueHistoryQuery): Promise<QueueHistory> {
    const now = this.clock.now();
    const key = `${query.window}/${query.bucket}`;
    const cached = this.cache.get(key);
    if (cached && now - cached.at < CACHE_MS) return cached.value;
    const value = this.compute(query, now);
    this.cache.set(key, { at: now, value });
    value.catch(() => this.cache.delete(key));
    return value;
  }

  private async compute(query: QueueHistoryQuery, now: number): Promise<QueueHistory> {
    const window = windowFor(query, now);
    const coverageFrom = window.first - query.window;
    const jobs = new Map<number, JobRecord>();
    let complete = true;
    const scan = async (filter: Omit<JobFilter, "limit" | "before">, stop: (job: JobRecord) => boolean): Promise<void> => {
      let before: number | undefined;
      for (;;) {
        if (jobs.size >= MAX_SCAN) {
          complete = false;
          return;
        }
        const page = await this.store.listJobs({ ...filter, before, limit: PAGE });
        for (const job of page) {
          if (stop(job)) return;
          jobs.set(job.id, job);
        }
        const last = page.at(-1);
        if (page.length < PAGE || !last) return;
        before = last.id;
      }
    };
    await scan({ state: "queued" }, () => false);
    await scan({ state: "processing" }, () => false);
    // Ids grow with creation time, so the newest-first scan can stop at the first older job.
    await scan({}, (job) => job.createdAt < coverageFrom);
    return {
      from: new Date(window.first).toISOString(),
      to: new Date(now).toISOString(),
      bucketMs: window.bucketMs,
      queues: bucketJobs(jobs.values(), window),
      coverageFrom: new Date(coverageFrom).toISOString(),
      complete,
    };
  }
}
