/**
 * Executor protocol 2 through a real coordinator: a job's reports batched as events, a dequeue
 * carrying the reports of ended attempts, bad batches refused whole-or-in-order, and executors of
 * protocol 1 (one request per write) still served. Then real executors: a job's reports arrive in
 * few requests and the outcome rides on the next dequeue.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PROTOCOL_VERSION, type JobView } from "../../src/protocol/index.ts";
import { http, startCluster, type Cluster } from "../helpers/cluster.ts";

const identity = (queue: string, protocolVersion = PROTOCOL_VERSION) => ({
  executorName: `events-${queue}`,
  hostname: "h",
  version: "test",
  protocolVersion,
  runtime: "shell",
  isolation: ["none"],
  network: "internet",
  queues: [queue],
});

interface Claimed {
  id: number;
  token: string;
}

describe("executor protocol 2: batched job events", () => {
  let cluster: Cluster;
  let executorAuth: Record<string, string>;

  before(async () => {
    cluster = await startCluster({ executors: 0 });
    executorAuth = { authorization: `token-executor ${cluster.coordinator.executorToken}`, "content-type": "application/json" };
  });
  after(async () => {
    await cluster.close();
  });

  const post = (path: string, auth: Record<string, string>, body: unknown) => http(`${cluster.coordinator.url}${path}`, { method: "POST", headers: auth, body: JSON.stringify(body) });
  const jobAuth = (job: Claimed) => ({ authorization: `Bearer ${job.token}`, "content-type": "application/json" });

  async function claim(queue: string, finished?: unknown[]): Promise<{ status: number; body: unknown; text: string }> {
    return post("/.executors/dequeue", executorAuth, { ...identity(queue), waitMs: 0, ...(finished ? { finished } : {}) });
  }

  async function queued(queue: string, steps = 1): Promise<Claimed> {
    await cluster.api.submit({ queue, isolation: "none", steps: Array.from({ length: steps }, () => ({ commands: ["true"] })) });
    const reply = await claim(queue);
    assert.equal(reply.status, 200, reply.text);
    return reply.body as Claimed;
  }

  const log = (key: string, offset: number, text: string) => ({ type: "log", key, offset, data: Buffer.from(text).toString("base64") });
  const finish = (key: string) => ({ type: "finish", key, exitCode: 0, durationMs: 3, state: "completed" });

  it("applies a whole attempt's events in one request, in order, with their results", async () => {
    const job = await queued("one-request");
    const events = [
      { type: "start", key: "prepare" },
      log("prepare", 0, "prepared\n"),
      finish("prepare"),
      { type: "start", key: "step-1" },
      log("step-1", 0, "hello "),
      log("step-1", 6, "world\n"),
      finish("step-1"),
      { type: "end", outcome: "completed" },
    ];
    const reply = await post(`/.executors/jobs/${job.id}/events`, jobAuth(job), { events });
    assert.equal(reply.status, 200, reply.text);
    const results = (reply.body as { results: unknown[] }).results;
    assert.equal(results.length, events.length);
    assert.deepEqual(results[5], { size: 12, cancel: false }, "a log event answers its entry's stored size");
    assert.deepEqual(results[7], { state: "completed" });
    const view = await cluster.api.getJob(job.id);
    assert.equal(view.state, "completed");
    assert.deepEqual(
      view.entries.map((entry) => [entry.key, entry.state, entry.size]),
      [
        ["prepare", "completed", 9],
        ["step-1", "completed", 12],
      ],
    );
    assert.equal((await cluster.api.readLog(job.id, "step-1")).toString(), "hello world\n");
    // The token died with the attempt: another batch is refused.
    const late = await post(`/.executors/jobs/${job.id}/events`, jobAuth(job), { events: [{ type: "start", key: "step-1" }] });
    assert.equal(late.status, 409, late.text);
  });

  it("stamps an event with the coordinator's clock less its agoMs", async () => {
    const job = await queued("ago");
    const before = Date.now();
    const reply = await post(`/.executors/jobs/${job.id}/events`, jobAuth(job), { events: [{ type: "start", key: "prepare", agoMs: 60_000 }] });
    assert.equal(reply.status, 200, reply.text);
    const started = Date.parse((await cluster.api.getJob(job.id)).entries.find((entry) => entry.key === "prepare")?.startedAt ?? "");
    assert.ok(started <= before - 59_000 && started >= before - 61_000, `prepare started 60 s before the request (${before - started} ms)`);
  });

  it("refuses a malformed batch with a clear error and stores none of it", async () => {
    const job = await queued("malformed");
    const cases: [unknown, RegExp][] = [
      [{ events: [{ type: "end", outcome: "completed" }, { type: "start", key: "prepare" }] }, /an end event must be the last one/],
      [{ events: [{ type: "start", key: "prepare" }, { type: "shout", key: "prepare" }] }, /events\.1\.type/],
      [{ events: [log("prepare", 0, "x"), { type: "log", key: "prepare", offset: 1, data: "not base64!" }] }, /events\.1\.data/],
      [{ events: [] }, /events/],
      [{ events: [{ type: "start", key: "prepare", agoMs: -5 }] }, /events\.0\.agoMs/],
    ];
    for (const [body, message] of cases) {
      const reply = await post(`/.executors/jobs/${job.id}/events`, jobAuth(job), body);
      assert.equal(reply.status, 400, reply.text);
      assert.match((reply.body as { error: { message: string } }).error.message, message);
    }
    const view = await cluster.api.getJob(job.id);
    assert.equal(view.state, "processing");
    assert.ok(view.entries.every((entry) => entry.state === "pending" && entry.size === 0), "nothing of the refused batches was stored");
  });

  it("stops at the first event that fails: the ones before it stay, the ones after are not applied", async () => {
    const job = await queued("first-failure");
    const reply = await post(`/.executors/jobs/${job.id}/events`, jobAuth(job), { events: [{ type: "start", key: "prepare" }, { type: "start", key: "no-such-step" }, log("prepare", 0, "after\n")] });
    assert.ok(reply.status >= 400 && reply.status < 500, reply.text);
    assert.match((reply.body as { error: { message: string } }).error.message, /no-such-step/);
    const prepare = (await cluster.api.getJob(job.id)).entries.find((entry) => entry.key === "prepare");
    assert.deepEqual([prepare?.state, prepare?.size], ["running", 0]);
  });

  it("a dequeue carries the reports of ended attempts, each answered on its own, and still claims", async () => {
    const done = await queued("carry");
    const lost = await queued("carry");
    assert.equal((await post(`/.executors/jobs/${lost.id}/fail`, jobAuth(lost), {})).status, 200, "the second attempt ends before its carried report");
    await cluster.api.submit({ queue: "carry", isolation: "none", steps: [{ commands: ["true"] }] });
    const end = [{ type: "end", outcome: "completed" }];
    const reply = await claim("carry", [
      { jobId: done.id, token: done.token, events: [{ type: "start", key: "step-1" }, finish("step-1"), ...end] },
      { jobId: lost.id, token: lost.token, events: end },
      { jobId: done.id + 1000, token: "ajt_not-a-token-of-any-attempt", events: end },
    ]);
    assert.equal(reply.status, 200, reply.text);
    const answer = reply.body as { finished: { jobId: number; results?: unknown[]; error?: { code: string } }[]; job: Claimed | null };
    assert.deepEqual(answer.finished[0], { jobId: done.id, results: [{}, {}, { state: "completed" }] });
    assert.equal(answer.finished[1]?.error?.code, "lease_lost");
    assert.equal(answer.finished[2]?.error?.code, "unauthorized");
    assert.ok(answer.job, "the dequeue still claimed the queued job");
    assert.equal((await cluster.api.getJob(done.id)).state, "completed");
    assert.equal((await cluster.api.getJob(lost.id)).state, "failed", "the report of an ended attempt changed nothing");
    // Nothing left to claim: a dequeue with reports answers job null at once, rather than 204.
    const empty = await claim("carry", [{ jobId: answer.job.id, token: answer.job.token, events: end }]);
    assert.equal(empty.status, 200, empty.text);
    assert.equal((empty.body as { job: unknown }).job, null);
    const bad = await claim("carry", [{ jobId: 1, token: "x", events: [{ type: "start", key: "prepare" }] }]);
    assert.equal(bad.status, 400, bad.text);
    assert.match((bad.body as { error: { message: string } }).error.message, /finished\.0\.events.*ends with its end event/);
  });

  it("still serves an executor of protocol 1: one request per write", async () => {
    await cluster.api.submit({ queue: "protocol-1", isolation: "none", steps: [{ commands: ["true"] }] });
    const reply = await post("/.executors/dequeue", executorAuth, { ...identity("protocol-1", 1), waitMs: 0 });
    assert.equal(reply.status, 200, reply.text);
    const job = reply.body as Claimed;
    const base = `${cluster.coordinator.url}/.executors/jobs/${job.id}`;
    const calls = [
      await post(`/.executors/jobs/${job.id}/steps/step-1/start`, jobAuth(job), {}),
      await http(`${base}/logs/step-1?offset=0`, { method: "POST", headers: { authorization: `Bearer ${job.token}`, "content-type": "application/octet-stream" }, body: Buffer.from("old\n") }),
      await post(`/.executors/jobs/${job.id}/steps/step-1/finish`, jobAuth(job), { exitCode: 0, durationMs: 1, state: "completed" }),
      await post(`/.executors/jobs/${job.id}/complete`, jobAuth(job), {}),
    ];
    assert.deepEqual(
      calls.map((call) => call.status),
      [200, 200, 200, 200],
      calls.map((call) => call.text).join("\n"),
    );
    const view = await cluster.api.getJob(job.id);
    assert.equal(view.state, "completed");
    assert.equal((await cluster.api.readLog(job.id, "step-1")).toString(), "old\n");
    const none = await post("/.executors/dequeue", executorAuth, { ...identity("protocol-1", 1), waitMs: 0 });
    assert.equal(none.status, 204, "protocol 1 dequeues still get 204 when there is no job");
  });
});

describe("executor protocol 2: a real executor's reports", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ executors: 1, executorArgs: ["--queues", "real", "--max-jobs", "1"] });
  });
  after(async () => {
    await cluster.close();
  });

  async function metric(name: string, via: string): Promise<number> {
    const text = await (await fetch(`${cluster.coordinator.url}/metrics`)).text();
    return Number(new RegExp(`^${name}\\{via="${via}"\\} (\\d+)`, "m").exec(text)?.[1] ?? 0);
  }

  async function settled(ids: number[]): Promise<JobView[]> {
    for (;;) {
      const views = await Promise.all(ids.map((id) => cluster.api.getJob(id)));
      if (views.every((view) => ["completed", "failed", "errored"].includes(view.state))) return views;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it("sends a job's reports in a few requests, carries outcomes on the next dequeue, and loses no log", async (t) => {
    const jobs = await Promise.all(
      Array.from({ length: 6 }, (_, index) => cluster.api.submit({ queue: "real", isolation: "none", steps: [{ commands: [`echo job ${index} step one`] }, { commands: [`printf 'job ${index} step two'`] }] })),
    );
    const views = await settled(jobs.map((job) => job.id));
    for (const [index, view] of views.entries()) {
      assert.equal(view.state, "completed", JSON.stringify(view));
      assert.deepEqual(
        view.entries.map((entry) => [entry.key, entry.state]),
        [
          ["prepare", "completed"],
          ["step-1", "completed"],
          ["step-2", "completed"],
        ],
      );
      assert.equal((await cluster.api.readLog(view.id, "step-1")).toString(), `job ${index} step one\n`);
      assert.equal((await cluster.api.readLog(view.id, "step-2")).toString(), `job ${index} step two`);
      assert.ok(view.entries.every((entry) => entry.startedAt !== null && entry.finishedAt !== null && Date.parse(entry.startedAt) <= Date.parse(entry.finishedAt)));
    }
    // Per job: a prepare start, log and finish, two steps each with a start, a log and a finish,
    // and the end: 10 reports, which protocol 1 sent as 10 requests.
    const events = (await metric("airlock_job_events_total", "events")) + (await metric("airlock_job_events_total", "dequeue"));
    const requests = (await metric("airlock_job_report_requests_total", "events")) + (await metric("airlock_job_report_requests_total", "dequeue"));
    const carried = await metric("airlock_job_report_requests_total", "dequeue");
    t.diagnostic(`6 jobs: ${events} reports in ${requests} requests (${carried} of them dequeues that also claimed)`);
    assert.equal(await metric("airlock_job_events_total", "route"), 0, "a protocol 2 executor uses no single-write route");
    assert.ok(events >= 6 * 10, `all reports arrived (${events})`);
    assert.ok(requests <= 6 * 5, `${events} reports came in ${requests} requests`);
    assert.ok(carried >= 1, "some outcome rode on the dequeue that claimed the next job");
  });
});
