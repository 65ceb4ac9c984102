/**
 * The executor's per-job report queue (src/executor/event-queue.ts) against a recording `send`:
 * order, batching, one request in flight, retries that keep order, failures that reject only their
 * own batch, and a dequeue taking (or handing back) an attempt's final reports.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { EventQueue } from "../../src/executor/event-queue.ts";
import { LeaseLostError, UnavailableError, ValidationError, type JobEvent, type JobEventResult } from "../../src/protocol/index.ts";

interface Recorder {
  queue: EventQueue;
  sent: JobEvent[][];
  ended: EventQueue[];
  /** Answers the oldest request still waiting. */
  answer(outcome?: Error): Promise<void>;
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

function recorder(lingerMs = 0): Recorder {
  const sent: JobEvent[][] = [];
  const ended: EventQueue[] = [];
  const waiting: { resolve: (results: JobEventResult[]) => void; reject: (error: Error) => void; events: JobEvent[] }[] = [];
  const queue = new EventQueue({
    send: (events) =>
      new Promise((resolve, reject) => {
        sent.push(events);
        waiting.push({ resolve, reject, events });
      }),
    logger: silentLogger,
    giveUpMs: 60_000,
    lingerMs,
    onEnd: (ending) => ended.push(ending),
  });
  return {
    queue,
    sent,
    ended,
    answer: async (outcome) => {
      // A retry comes after the queue's backoff (200 ms first).
      for (let tries = 0; tries < 300 && waiting.length === 0; tries += 1) await new Promise((resolve) => setTimeout(resolve, 5));
      const next = waiting.shift();
      assert.ok(next, "a request is waiting for its answer");
      if (outcome) next.reject(outcome);
      else next.resolve(next.events.map((event): JobEventResult => (event.type === "log" ? { size: event.offset + Buffer.from(event.data, "base64").length, cancel: false } : {})));
      await tick();
    },
  };
}

const start = (key: string): JobEvent => ({ type: "start", key });
const finish = (key: string): JobEvent => ({ type: "finish", key, exitCode: 0, durationMs: 1, state: "completed" });
const end: JobEvent = { type: "end", outcome: "completed" };
const types = (events: JobEvent[] | undefined) => events?.map((event) => `${event.type}:${"key" in event ? event.key : ""}`);

describe("the executor's job report queue", () => {
  it("batches what one turn pushes, keeps one request in flight, and sends the rest in order", async () => {
    const r = recorder();
    const first = r.queue.push(start("prepare"));
    await tick();
    assert.deepEqual(r.sent.map(types), [["start:prepare"]]);
    const later = [r.queue.push({ type: "log", key: "prepare", offset: 0, data: Buffer.from("ok\n").toString("base64") }), r.queue.push(finish("prepare")), r.queue.push(start("step-1"))];
    await tick();
    assert.equal(r.sent.length, 1, "nothing more is sent while a request is in flight");
    await r.answer();
    await first;
    await tick();
    assert.deepEqual(r.sent.map(types)[1], ["log:prepare", "finish:prepare", "start:step-1"]);
    await r.answer();
    assert.deepEqual(await Promise.all(later), [{ size: 3, cancel: false }, {}, {}]);
  });

  it("stamps starts and finishes with how long ago they were pushed", async () => {
    const r = recorder(40);
    void r.queue.push(start("prepare"));
    await new Promise((resolve) => setTimeout(resolve, 60));
    const event = r.sent[0]?.[0] as { agoMs?: number } | undefined;
    assert.ok(event?.agoMs !== undefined && event.agoMs >= 30, `agoMs ${event?.agoMs} covers the linger`);
  });

  it("retries a batch that failed retryably before anything pushed after it", async () => {
    const r = recorder();
    const first = r.queue.push(start("step-1"));
    await tick();
    const second = r.queue.push(finish("step-1"));
    await r.answer(new UnavailableError("coordinator down"));
    await r.answer();
    await r.answer();
    await Promise.all([first, second]);
    assert.deepEqual(r.sent.map(types), [["start:step-1"], ["start:step-1"], ["finish:step-1"]], "the failed batch went again, whole, first");
  });

  it("rejects only the events of a batch that failed for good; later ones are still sent", async () => {
    const r = recorder();
    const first = assert.rejects(r.queue.push(start("step-1")), ValidationError);
    await tick();
    const second = assert.rejects(r.queue.push(finish("step-1")), LeaseLostError);
    await r.answer(new ValidationError("bad"));
    await first;
    await r.answer(new LeaseLostError("gone"));
    await second;
    assert.equal(r.sent.length, 2);
  });

  it("hands its final reports to a dequeue, which settles them or hands them back", async () => {
    const r = recorder(1000);
    const reports = [r.queue.push(finish("step-1")), r.queue.push(end)];
    assert.deepEqual(r.ended, [r.queue], "pushing the end offers the queue to the next dequeue");
    const taken = r.queue.takeFinal();
    assert.deepEqual(types(taken?.events), ["finish:step-1", "end:"]);
    taken?.settle({ jobId: 1, results: [{}, { state: "completed" }] });
    assert.deepEqual(await Promise.all(reports), [{}, { state: "completed" }]);
    await tick();
    assert.equal(r.sent.length, 0, "what a dequeue carried is not sent again");

    const again = r.queue.push(end);
    const back = r.queue.takeFinal();
    assert.ok(back);
    back.putBack();
    await tick();
    assert.deepEqual(r.sent.map(types), [["end:"]], "reports a dequeue did not deliver are sent by the queue itself");
    await r.answer();
    await again;
  });

  it("gives nothing to a dequeue while a request is in flight or before the end", async () => {
    const r = recorder();
    void r.queue.push(start("step-1"));
    assert.equal(r.queue.takeFinal(), undefined, "no end yet");
    await tick();
    void r.queue.push(end);
    assert.equal(r.queue.takeFinal(), undefined, "a request is in flight: the end must follow it");
    await r.answer();
    await r.answer();
  });

  it("a carried report refused for good rejects its events; a retryable refusal sends them again", async () => {
    const r = recorder(1000);
    const lost = assert.rejects(r.queue.push(end), LeaseLostError);
    r.queue.takeFinal()?.settle({ jobId: 1, error: { code: "lease_lost", message: "gone" } });
    await lost;
    const retried = r.queue.push(end);
    r.queue.takeFinal()?.settle({ jobId: 1, error: { code: "unavailable", message: "database down" } });
    await tick();
    assert.deepEqual(r.sent.map(types), [["end:"]]);
    await r.answer();
    await retried;
  });
});
