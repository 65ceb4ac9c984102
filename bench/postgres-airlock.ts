/**
 * Airlock's side of the Postgres benchmark: the store alone (claim + complete cycles; pickup
 * through the coordinator's dispatcher, on the same store and across two stores), and the same
 * through a real coordinator process over HTTP (simulated executors: dequeue + complete).
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Agent, request } from "undici";
import { systemClock } from "../src/common/clock.ts";
import { silentLogger } from "../src/common/logger.ts";
import { startLocalCoordinator, type LocalCoordinator } from "../src/cli/local-cluster.ts";
import { Dispatcher } from "../src/coordinator/services/dispatcher.ts";
import { JobSpecInput, PROTOCOL_VERSION } from "../src/protocol/index.ts";
import { openPostgresStore, type PostgresStore } from "../src/store/postgres/index.ts";
import { baseEnv, ENTRY } from "../test/helpers/cluster.ts";
import type { QueueFigures } from "./postgres-peers.ts";

export const EXECUTOR_TOKEN = "bench-executor-token-0123456789abcdef";
export const API_TOKEN = "bench-api-token-0123456789abcdef";
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function noopSpec(queue: string, env: Record<string, string> = {}) {
  return JobSpecInput.parse({ queue, isolation: "none", steps: [{ key: "noop", commands: ["true"], env }] });
}

function identity(name: string, queue: string) {
  return { executorName: name, hostname: "bench", version: "bench", protocolVersion: PROTOCOL_VERSION, runtime: "shell", isolation: ["none" as const], network: "internet" as const, queues: [queue] };
}

async function enqueueMany(store: PostgresStore, queue: string, count: number): Promise<void> {
  for (let offset = 0; offset < count; offset += 50) {
    await Promise.all(Array.from({ length: Math.min(50, count - offset) }, () => store.jobs.enqueue({ spec: noopSpec(queue), ref: null, commit: null }, Date.now())));
  }
}

/** Claim + complete straight on the store, `workers` at a time, until `queue` is empty: jobs done. */
async function storeCycles(store: PostgresStore, queue: string, workers: number): Promise<number> {
  let done = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      const executor = identity(`bench-${worker}`, queue);
      for (;;) {
        const job = await store.jobs.claim({ executor, tokenHash: randomBytes(20).toString("hex"), leaseMs: 60_000, preference: [queue] }, Date.now());
        if (!job) return;
        await store.jobs.finishAttempt({ jobId: job.id, attempt: job.attempt, repository: null, executorName: executor.executorName }, "completed", null, Date.now());
        done += 1;
      }
    }),
  );
  return done;
}

/** Claim + complete cycles straight on the store, then pickup through the dispatcher. */
export async function airlockStore(url: string, jobs: number, workers: number, pickups: number, warmJobs = 0): Promise<QueueFigures & { pickupAcrossMs: number[] }> {
  const a = await openPostgresStore(url, { poolSize: workers + 2 });
  let b: PostgresStore | undefined;
  try {
    // A steady-state rate: the JIT has compiled the claim path before the clock starts.
    if (warmJobs > 0) {
      await enqueueMany(a, "bench-warm", warmJobs);
      await storeCycles(a, "bench-warm", workers);
    }
    await enqueueMany(a, "bench", jobs);
    // Each enqueue announced its job (NOTIFY); let this process's listener take them in before
    // the clock starts, as the peers' bulk inserts leave nothing behind to digest.
    await pause(1000);
    const started = performance.now();
    const done = await storeCycles(a, "bench", workers);
    const seconds = (performance.now() - started) / 1000;
    if (done !== jobs) throw new Error(`airlock completed ${done} of ${jobs} jobs`);
    const pickupMs = await dispatcherPickup(a, a, pickups);
    // The second coordinator's store opens only now: its listener would otherwise take its share
    // of this process's CPU during the timed cycles, which the peers' runs do not carry.
    b = await openPostgresStore(url, { poolSize: 4 });
    const pickupAcrossMs = await dispatcherPickup(a, b, pickups);
    return { jobs, seconds, pickupMs, pickupAcrossMs };
  } finally {
    await a.close();
    await b?.close();
  }
}

/** Enqueue through `from` while an idle dequeue is held by a dispatcher on `on`. */
async function dispatcherPickup(from: PostgresStore, on: PostgresStore, count: number): Promise<number[]> {
  const dispatcher = new Dispatcher({ store: on, clock: systemClock, leaseMs: 60_000, logger: silentLogger });
  const latencies: number[] = [];
  try {
    for (let index = 0; index < count; index += 1) {
      const held = dispatcher.dequeue({ ...identity("pickup", "pickup"), waitMs: 10_000 }, 10_000, new AbortController().signal);
      await pause(20);
      const queuedAt = performance.now();
      await from.jobs.enqueue({ spec: noopSpec("pickup"), ref: null, commit: null }, Date.now());
      const claimed = await held;
      latencies.push(performance.now() - queuedAt);
      if (!claimed) throw new Error("the held dequeue ended without a job");
      await on.jobs.finishAttempt({ jobId: claimed.job.id, attempt: claimed.job.attempt, repository: null, executorName: "pickup" }, "completed", null, Date.now());
    }
  } finally {
    dispatcher.close();
  }
  return latencies;
}

export async function startPostgresCoordinator(dir: string, url: string, name: string): Promise<LocalCoordinator> {
  return startLocalCoordinator({
    entry: ENTRY,
    dataDir: join(dir, name),
    env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: EXECUTOR_TOKEN, AIRLOCK_API_TOKEN: API_TOKEN },
    extraArgs: ["--database", url, "--executor-token", EXECUTOR_TOKEN, "--api-token", API_TOKEN, "--log-level", "warn"],
  });
}

/** A light HTTP executor: the executor API calls a real executor makes, without running anything. */
export class SimulatedExecutor {
  readonly name: string;
  private readonly agent: Agent;
  private readonly url: string;
  private readonly queue: string;
  private readonly executorToken: string;

  constructor(url: string, agent: Agent, name: string, queue: string, executorToken = EXECUTOR_TOKEN) {
    this.url = url;
    this.agent = agent;
    this.name = name;
    this.queue = queue;
    this.executorToken = executorToken;
  }

  private async post(path: string, auth: string, body: unknown, signal?: AbortSignal): Promise<{ status: number; body: unknown }> {
    const response = await request(`${this.url}${path}`, {
      method: "POST",
      dispatcher: this.agent,
      headers: { authorization: auth, "content-type": "application/json" },
      body: JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
    const text = await response.body.text();
    return { status: response.statusCode, body: text ? (JSON.parse(text) as unknown) : undefined };
  }

  async dequeue(waitMs: number, signal?: AbortSignal): Promise<{ id: number; token: string; spec: { steps: { env: Record<string, string> }[] } } | undefined> {
    const reply = await this.post("/.executors/dequeue", `token-executor ${this.executorToken}`, { ...identity(this.name, this.queue), waitMs }, signal);
    if (reply.status === 204) return undefined;
    if (reply.status !== 200) throw new Error(`dequeue answered ${reply.status}: ${JSON.stringify(reply.body)}`);
    return reply.body as { id: number; token: string; spec: { steps: { env: Record<string, string> }[] } };
  }

  async complete(job: { id: number; token: string }): Promise<void> {
    const reply = await this.post(`/.executors/jobs/${job.id}/complete`, `Bearer ${job.token}`, {});
    if (reply.status !== 200) throw new Error(`complete answered ${reply.status}: ${JSON.stringify(reply.body)}`);
  }

  /**
   * Dequeue + complete until the queue is empty, as an executor of protocol 2 does it when its slot
   * frees: each dequeue carries the previous job's end (one request per job). Returns jobs completed.
   */
  async cycle(): Promise<number> {
    let previous: { id: number; token: string } | undefined;
    let done = 0;
    for (;;) {
      const finished = previous ? [{ jobId: previous.id, token: previous.token, events: [{ type: "end", outcome: "completed" }] }] : undefined;
      const reply = await this.post("/.executors/dequeue", `token-executor ${this.executorToken}`, { ...identity(this.name, this.queue), waitMs: 0, ...(finished ? { finished } : {}) });
      if (reply.status === 204) return done;
      if (reply.status !== 200) throw new Error(`dequeue answered ${reply.status}: ${JSON.stringify(reply.body)}`);
      const answer = (finished ? reply.body : { finished: [], job: reply.body }) as { finished: { results?: unknown[]; error?: unknown }[]; job: { id: number; token: string } | null };
      for (const result of answer.finished) {
        if (!result.results) throw new Error(`a carried report failed: ${JSON.stringify(result.error)}`);
        done += 1;
      }
      if (!answer.job) return done;
      previous = answer.job;
    }
  }

  async heartbeat(jobIds: number[]): Promise<void> {
    const reply = await this.post("/.executors/heartbeat", `token-executor ${this.executorToken}`, { ...identity(this.name, this.queue), jobIds, telemetry: {} });
    if (reply.status !== 200) throw new Error(`heartbeat answered ${reply.status}: ${JSON.stringify(reply.body)}`);
  }
}

/** `workers` simulated executors over HTTP until `queue` is empty: jobs completed. */
export async function httpCycles(url: string, agent: Agent, queue: string, workers: number, executorToken = EXECUTOR_TOKEN): Promise<number> {
  const counts = await Promise.all(Array.from({ length: workers }, (_, worker) => new SimulatedExecutor(url, agent, `http-${worker}`, queue, executorToken).cycle()));
  return counts.reduce((sum, count) => sum + count, 0);
}

/** Dequeue + complete cycles over HTTP against one coordinator, then pickup (submit -> dequeue answered). */
export async function airlockHttp(url: string, coordinator: LocalCoordinator, jobs: number, workers: number, pickups: number, warmJobs = 0): Promise<QueueFigures> {
  const store = await openPostgresStore(url, { poolSize: 4 });
  const agent = new Agent({ connections: workers + 4 });
  try {
    if (warmJobs > 0) {
      await enqueueMany(store, "http-warm", warmJobs);
      await httpCycles(coordinator.url, agent, "http-warm", workers);
    }
    await enqueueMany(store, "http", jobs);
    // As for the store alone: the coordinator's listener takes in the enqueues' announcements
    // before the clock starts.
    await pause(1000);
    const started = performance.now();
    const done = await httpCycles(coordinator.url, agent, "http", workers);
    const seconds = (performance.now() - started) / 1000;
    if (done !== jobs) throw new Error(`airlock over HTTP completed ${done} of ${jobs} jobs`);
    const executor = new SimulatedExecutor(coordinator.url, agent, "http-pickup", "http-pickup");
    const pickupMs: number[] = [];
    for (let index = 0; index < pickups; index += 1) {
      const held = executor.dequeue(10_000);
      await pause(20);
      const queuedAt = performance.now();
      const submitted = await request(`${coordinator.url}/api/jobs`, {
        method: "POST",
        dispatcher: agent,
        headers: { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ queue: "http-pickup", isolation: "none", steps: [{ commands: ["true"] }] }),
      });
      await submitted.body.dump();
      const job = await held;
      pickupMs.push(performance.now() - queuedAt);
      if (!job) throw new Error("the held dequeue ended without a job");
      await executor.complete(job);
    }
    return { jobs, seconds, pickupMs };
  } finally {
    await agent.close();
    await store.close();
  }
}
