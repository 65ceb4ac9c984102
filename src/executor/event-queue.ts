/**
 * One attempt's reports to the coordinator (entry starts and finishes, log appends, the outcome),
 * sent in the order they were made, batched: executor protocol 2 (src/protocol/job-events.ts).
 *
 * States: IDLE -(push)-> SCHEDULED -(linger, or the next turn of the event loop for an end
 * event)-> IN_FLIGHT -(answer)-> IDLE, or SCHEDULED again when events were pushed meanwhile.
 * Everything pushed while a request is scheduled or in flight goes in the next one, so a job makes
 * few requests however many reports it has, and at most one request per job is in flight: the
 * coordinator applies events in push order. Nothing in the job's path waits for a report's
 * answer but the attempt's end, so the linger costs no time; it only delays what a watcher sees.
 *
 * A request that fails retryably (network, 5xx other than a sandbox error) is sent again whole,
 * with backoff, before anything pushed after it, until `giveUpMs`; any other failure rejects every
 * event of that request, and later events are still sent. Resending is safe: a log append at the
 * same offset is stored once, and an event the attempt can no longer take fails as its route would.
 *
 * `takeFinal`: when the pending events end with the attempt's end event and nothing is in flight,
 * the executor's next dequeue may carry them instead (one request for "done" and "next"). It hands
 * them back with `settle` (answered) or `putBack` (not delivered), which sends them itself.
 */
import type { Logger } from "../common/logger.ts";
import { persist, retryable } from "./attempt-end.ts";
import { fromErrorBody, ERROR_CODES, MAX_EVENTS, type FinishedResult, type JobEvent, type JobEventResult } from "../protocol/index.ts";

interface Pending {
  event: JobEvent;
  /** When it was pushed (ms on this process's monotonic clock), for the event's `agoMs`. */
  at: number;
  resolve: (result: JobEventResult) => void;
  reject: (error: unknown) => void;
}

/** Keeps one request's body well under the coordinator's limit (logs travel base64). */
const MAX_BATCH_BYTES = 6 * 1024 * 1024;
const MAX_CARRIED_LOG_BYTES = 16 * 1024;

export class EventQueue {
  private pending: Pending[] = [];
  private inFlight = false;
  private readonly send: (events: JobEvent[]) => Promise<JobEventResult[]>;
  private readonly logger: Logger;
  private readonly giveUpMs: number;
  /** Called when an end event is pushed: the executor may carry it on its next dequeue. */
  private readonly onEnd: (queue: EventQueue) => void;
  private readonly lingerMs: number;
  private timer: { kind: "immediate"; handle: NodeJS.Immediate } | { kind: "timeout"; handle: NodeJS.Timeout } | undefined;

  constructor(options: { send: (events: JobEvent[]) => Promise<JobEventResult[]>; logger: Logger; giveUpMs: number; lingerMs: number; onEnd: (queue: EventQueue) => void }) {
    this.send = options.send;
    this.lingerMs = options.lingerMs;
    this.logger = options.logger;
    this.giveUpMs = options.giveUpMs;
    this.onEnd = options.onEnd;
  }

  push(event: JobEvent): Promise<JobEventResult> {
    return new Promise((resolve, reject) => {
      this.pending.push({ event, at: performance.now(), resolve, reject });
      if (event.type === "end") this.onEnd(this);
      this.schedule();
    });
  }

  /** The pending events, for a dequeue to carry, when they end the attempt and nothing is in flight. */
  takeFinal(): { events: JobEvent[]; settle: (answer: FinishedResult) => void; putBack: () => void } | undefined {
    if (this.inFlight || this.pending.at(-1)?.event.type !== "end" || this.pending.length > MAX_EVENTS) return undefined;
    // A dequeue's body stays small: a long log tail goes in a request of its own.
    if (this.pending.reduce((sum, entry) => sum + (entry.event.type === "log" ? entry.event.data.length : 0), 0) > MAX_CARRIED_LOG_BYTES) return undefined;
    const taken = this.pending;
    this.pending = [];
    this.cancelTimer();
    const sentAt = performance.now();
    return {
      events: taken.map((entry) => stamp(entry, sentAt)),
      settle: (answer) => {
        if ("results" in answer) {
          taken.forEach((entry, index) => entry.resolve(answer.results[index] ?? {}));
          return;
        }
        const error = fromErrorBody(ERROR_CODES[answer.error.code as keyof typeof ERROR_CODES] ?? 500, { error: answer.error });
        if (retryable(error)) this.requeue(taken);
        else for (const entry of taken) entry.reject(error);
      },
      putBack: () => this.requeue(taken),
    };
  }

  private cancelTimer(): void {
    if (this.timer?.kind === "immediate") clearImmediate(this.timer.handle);
    if (this.timer?.kind === "timeout") clearTimeout(this.timer.handle);
    this.timer = undefined;
  }

  private requeue(taken: Pending[]): void {
    this.pending = [...taken, ...this.pending];
    this.schedule();
  }

  private schedule(): void {
    // While a request is in flight, its answer schedules what was pushed meanwhile.
    if (this.inFlight || this.pending.length === 0) return;
    const ending = this.pending.at(-1)?.event.type === "end";
    if (this.timer) {
      if (!ending || this.timer.kind === "immediate") return;
      this.cancelTimer();
    }
    const fire = (): void => {
      this.timer = undefined;
      void this.flush();
    };
    // The end goes on the next turn (unless a dequeue takes it first): someone waits for it.
    // Other events linger, so that an entry's log, its finish and the next start share a request.
    this.timer = ending || this.lingerMs <= 0 ? { kind: "immediate", handle: setImmediate(fire) } : { kind: "timeout", handle: setTimeout(fire, this.lingerMs) };
  }

  private async flush(): Promise<void> {
    if (this.inFlight || this.pending.length === 0) return;
    this.inFlight = true;
    const batch = this.cut();
    try {
      // Each try stamps the events afresh: `agoMs` counts to the request that carries them.
      const results = await persist(() => this.send(batch.map((entry) => stamp(entry, performance.now()))), this.logger, "job report", this.giveUpMs);
      batch.forEach((entry, index) => entry.resolve(results[index] ?? {}));
    } catch (error) {
      for (const entry of batch) entry.reject(error);
    } finally {
      this.inFlight = false;
      if (this.pending.length > 0) this.schedule();
    }
  }

  /** The next request's events: in order, up to the size and count limits (at least one). */
  private cut(): Pending[] {
    let bytes = 0;
    let count = 0;
    for (const entry of this.pending) {
      const size = entry.event.type === "log" ? entry.event.data.length : 256;
      if (count > 0 && (bytes + size > MAX_BATCH_BYTES || count >= MAX_EVENTS)) break;
      bytes += size;
      count += 1;
    }
    return this.pending.splice(0, count);
  }
}

function stamp(entry: Pending, sentAt: number): JobEvent {
  const { event } = entry;
  if (event.type !== "start" && event.type !== "finish") return event;
  return { ...event, agoMs: Math.min(600_000, Math.max(0, Math.round(sentAt - entry.at))) };
}
