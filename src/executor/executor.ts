/**
 * The executor's main loop: long-poll for jobs while a slot is free, run up to `maxJobs` at once,
 * heartbeat for all of them.
 *
 * States: RUNNING -(drain)-> DRAINING -(last job ends)-> STOPPED.
 *   RUNNING   dequeues whenever fewer than maxJobs jobs run; each dequeue is held open by the
 *             coordinator until a job arrives, so no poll interval delays pickup. A job whose
 *             attempt is over no longer holds its slot while its job dir is removed (at most
 *             maxJobs more dirs than slots), and its final report may ride on the dequeue that
 *             fills the slot (client.ts).
 *   DRAINING  the in-flight dequeue is aborted and no new one starts; running jobs finish.
 *             `cancelAll` stops them instead (reported as errored, to be retried elsewhere).
 * Heartbeats: every interval, the ids of running jobs go to the coordinator; a job missing from
 * `knownIds` was reset or reassigned and is stopped without a report; `cancelIds` are stopped as
 * canceled. Only ids that were in the request are judged, so a job dequeued meanwhile is safe.
 * Each accepted heartbeat rewrites <data>/heartbeat (time and coordinator URL): a container's
 * health check reads its age (deploy/images/healthcheck.sh).
 * Refusal: a coordinator that speaks no protocol of ours (IncompatibleProtocolError, on any
 * heartbeat or dequeue) stops dequeuing (DRAINING) and settles `refused`; the first
 * heartbeat, in `start`, comes before anything else starts, so a refused start throws instead.
 */
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import type { Clock } from "../common/clock.ts";
import type { Logger } from "../common/logger.ts";
import { versionLabel } from "../common/build-info.ts";
import { IncompatibleProtocolError, ISOLATION_LEVELS, isolationRank, PROTOCOL_VERSION, type ExecutorIdentity, type Isolation } from "../protocol/index.ts";
import { processAlive, type Runtime } from "../runtimes/index.ts";
import type { CoordinatorClient } from "./client.ts";
import type { ExecutorConfig } from "./config.ts";
import { EgressHost } from "./egress.ts";
import { JobRun } from "./job-runner.ts";
import { PackageCache } from "./package-cache.ts";
import { RepoCache } from "./repo-cache.ts";
import { OWNER_FILE } from "./workspace.ts";

export type ExecutorState = "running" | "draining" | "stopped";

export class Executor {
  private readonly config: Readonly<ExecutorConfig>;
  private readonly client: CoordinatorClient;
  private readonly runtime: Runtime;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly running = new Map<number, JobRun>();
  /** Of `running`, those whose attempt is over (reported or reporting) and whose job dir is being removed. */
  private readonly ended = new Set<number>();
  private readonly dequeueAbort = new AbortController();
  private state: ExecutorState = "running";
  private slotFreed: () => void = () => undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  readonly identity: ExecutorIdentity;
  private egress: EgressHost | undefined;
  private readonly cache: RepoCache | undefined;
  private readonly packages: PackageCache | undefined;
  private refusal: IncompatibleProtocolError | undefined;
  private onRefused: (error: IncompatibleProtocolError) => void = () => undefined;
  /** Settles when a coordinator refuses this executor's protocol; the executor is draining then. */
  readonly refused: Promise<IncompatibleProtocolError> = new Promise((resolve) => {
    this.onRefused = resolve;
  });

  /** `protocolVersion` is for tests of the refusal; an executor speaks its build's protocol. */
  constructor(options: { config: Readonly<ExecutorConfig>; client: CoordinatorClient; runtime: Runtime; logger: Logger; clock: Clock; protocolVersion?: number }) {
    this.config = options.config;
    this.client = options.client;
    this.runtime = options.runtime;
    this.clock = options.clock;
    this.logger = options.logger.child({ executor: options.config.name });
    this.cache =
      this.config.repoCacheMaxBytes > 0
        ? new RepoCache({ dir: join(this.config.dataDir, "repo-cache"), maxBytes: this.config.repoCacheMaxBytes, hostPath: this.config.hostPath, logger: this.logger })
        : undefined;
    this.packages = this.config.packageCacheMaxBytes > 0 ? new PackageCache({ dir: join(this.config.dataDir, "package-cache"), maxBytes: this.config.packageCacheMaxBytes, logger: this.logger }) : undefined;
    const offered: Isolation[] = ISOLATION_LEVELS.filter((level) => isolationRank(level) <= isolationRank(this.runtime.isolation));
    this.identity = {
      executorName: this.config.name,
      hostname: hostname(),
      version: versionLabel(),
      protocolVersion: options.protocolVersion ?? PROTOCOL_VERSION,
      runtime: this.runtime.name,
      isolation: offered,
      network: this.config.network,
      queues: this.config.queues,
    };
  }

  get runningJobIds(): number[] {
    return [...this.running.keys()];
  }

  /** Cleans up after dead executors of this host, then starts heartbeating and dequeuing. */
  async start(): Promise<void> {
    await this.heartbeat();
    if (this.refusal) throw this.refusal;
    await this.reapLeftovers();
    this.egress = await EgressHost.create(this.config, this.runtime, this.logger);
    await this.runtime.start?.({ forwarder: this.egress?.forwarder });
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.config.heartbeatIntervalMs);
    this.loop = this.pollLoop();
    this.logger.info("executor started", { runtime: this.runtime.name, queues: this.config.queues, maxJobs: this.config.maxJobs, url: this.client.currentUrl });
  }

  private async reapLeftovers(): Promise<void> {
    const reaped = (await this.runtime.reapLeftovers?.()) ?? 0;
    if (reaped > 0) this.logger.warn("removed leftovers of a dead executor", { runtime: this.runtime.name, count: reaped });
    // Workspaces of dead executors go; another live executor may share this root.
    const entries = await readdir(this.config.workspaceRoot).catch(() => [] as string[]);
    for (const entry of entries) {
      if (!entry.startsWith("job-")) continue;
      const owner = Number(await readFile(join(this.config.workspaceRoot, entry, OWNER_FILE), "utf8").catch(() => "0"));
      if (owner > 0 && owner !== process.pid && processAlive(owner)) continue;
      await rm(join(this.config.workspaceRoot, entry), { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private async pollLoop(): Promise<void> {
    let backoff = 250;
    while (this.state === "running") {
      if (this.running.size - this.ended.size >= this.config.maxJobs || this.running.size >= 2 * this.config.maxJobs) {
        await new Promise<void>((resolve) => {
          this.slotFreed = resolve;
        });
        continue;
      }
      try {
        const job = await this.client.dequeue({ ...this.identity, waitMs: 25_000 }, this.dequeueAbort.signal);
        backoff = 250;
        if (!job) continue;
        if (this.state !== "running") {
          await this.client.forJob(job).finish("errored", "executor shutting down").catch(() => undefined);
          break;
        }
        this.launch(job);
      } catch (error) {
        if (error instanceof IncompatibleProtocolError) this.refuse(error);
        if (this.state !== "running") break;
        this.logger.warn("dequeue failed", { error: String(error), url: this.client.currentUrl });
        await this.clock.sleep(backoff, this.dequeueAbort.signal).catch(() => undefined);
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  }

  private launch(job: JobRun["job"]): void {
    const onEnded = (): void => {
      this.ended.add(job.id);
      this.slotFreed();
    };
    const run = new JobRun(job, { client: this.client, runtime: this.runtime, config: this.config, logger: this.logger, egress: this.egress, cache: this.cache, packages: this.packages, onEnded });
    this.running.set(job.id, run);
    void run
      .run()
      .catch((error: unknown) => this.logger.error("job run crashed", { jobId: job.id, error: String(error) }))
      .finally(() => {
        this.running.delete(job.id);
        this.ended.delete(job.id);
        this.slotFreed();
      });
  }

  async heartbeat(): Promise<void> {
    const sent = this.runningJobIds.filter((id) => !this.ended.has(id));
    try {
      const reply = await this.client.heartbeat({ ...this.identity, jobIds: sent, warmPool: this.runtime.warmPool?.() });
      const known = new Set(reply.knownIds);
      for (const id of sent) {
        if (!known.has(id)) this.running.get(id)?.stop({ kind: "lease-lost" });
      }
      for (const id of reply.cancelIds) this.running.get(id)?.stop({ kind: "canceled" });
      await this.markAlive();
    } catch (error) {
      if (error instanceof IncompatibleProtocolError) this.refuse(error);
      else this.logger.warn("heartbeat failed", { error: String(error), url: this.client.currentUrl });
    }
  }

  private async markAlive(): Promise<void> {
    const line = `${new Date(this.clock.now()).toISOString()} heartbeat accepted by ${this.client.currentUrl}\n`;
    try {
      await writeFile(join(this.config.dataDir, "heartbeat"), line);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      await mkdir(this.config.dataDir, { recursive: true, mode: 0o700 });
      await writeFile(join(this.config.dataDir, "heartbeat"), line);
    }
  }

  /** The coordinator will take nothing from us: stop asking for jobs and say why, once. */
  private refuse(error: IncompatibleProtocolError): void {
    if (this.refusal) return;
    this.refusal = error;
    this.logger.error("the coordinator refused this executor", { url: this.client.currentUrl, reason: error.message });
    this.stopDequeuing();
    this.onRefused(error);
  }

  private stopDequeuing(): void {
    if (this.state !== "running") return;
    this.state = "draining";
    this.dequeueAbort.abort();
    this.slotFreed();
  }

  /** Stops dequeuing and waits for running jobs to finish. */
  async drain(): Promise<void> {
    if (this.state === "running") {
      this.stopDequeuing();
      this.logger.info("draining: no new jobs; waiting for running ones", { running: this.runningJobIds });
    }
    await this.loop;
    while (this.running.size > 0) {
      await new Promise<void>((resolve) => {
        this.slotFreed = resolve;
      });
    }
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.state !== "stopped") await this.runtime.close?.();
    this.state = "stopped";
  }

  /** Stops running jobs now; they are reported errored so another executor retries them. */
  cancelAll(): void {
    for (const run of this.running.values()) run.stop({ kind: "shutdown" });
  }

  async close(): Promise<void> {
    this.cancelAll();
    await this.drain();
    await this.client.close();
  }
}
