/**
 * One job's sandbox under Docker: each step runs in a fresh container from the step's image, on
 * the job's workspace, and the container is removed before `exec` resolves.
 *
 * A step goes CREATE (pull on a missing image, then create again) -> ATTACH + register WAIT (in
 * parallel; both before start so no output and no exit is missed) -> START -> RUNNING (output
 * streamed; pids cgroup watched) -> EXITED (inspect only when the exit code is not 0, for
 * OOMKilled) -> REMOVED. Calls that create or start are never cut short, so the id of every
 * container made is known; what waits (pull, the run itself) ends at once when the step's signal
 * aborts or the sandbox is destroyed, and the `finally` removes the container (force: kills it).
 *
 * One step runs at a time (the job runner awaits each). `destroy` aborts the running step, waits
 * for its removal, then removes anything else labelled with this attempt (belt and braces).
 */
import { realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import { coerceError, formatSize, SandboxError, UnavailableError } from "../../protocol/index.ts";
import { LABEL } from "../labels.ts";
import type { Sandbox, SandboxSpec, StepIO, StepOutcome, StepRun } from "../runtime.ts";
import { StepAborted, until } from "../until.ts";
import { DockerApiError, type DockerClient } from "./client.ts";
import { containerConfig, DEFAULT_PIDS_LIMIT } from "./container-config.ts";
import { Demuxer } from "./demux.ts";
import { parseImageRef, registryAuthHeader } from "./image-ref.ts";
import { PidsWatch } from "./pids-watch.ts";

/** How long output may still arrive after the container's exit was reported. */
const OUTPUT_GRACE_MS = 2000;

export interface DockerSandboxOptions {
  client: DockerClient;
  spec: SandboxSpec;
  /** OCI runtime for the containers ("runsc"), or undefined for dockerd's default. */
  ociRuntime: string | undefined;
  /** Image for steps that name none. */
  defaultImage: string;
  /** "docker" or "gvisor": for ids and messages. */
  runtimeName: string;
}

export class DockerSandbox implements Sandbox {
  readonly id: string;
  private readonly options: DockerSandboxOptions;
  private readonly client: DockerClient;
  private readonly spec: SandboxSpec;
  private readonly destroyed = new AbortController();
  private running: Promise<StepOutcome> | undefined;
  private destroying: Promise<void> | undefined;

  constructor(options: DockerSandboxOptions) {
    this.options = options;
    this.client = options.client;
    this.spec = options.spec;
    this.id = `${options.runtimeName}-${this.spec.jobId}-${this.spec.attempt}-${randomBytes(3).toString("hex")}`;
  }

  exec(run: StepRun, io: StepIO, signal: AbortSignal): Promise<StepOutcome> {
    const step = this.runStep(run, io, AbortSignal.any([signal, this.destroyed.signal]));
    this.running = step;
    return step;
  }

  private async runStep(run: StepRun, io: StepIO, stop: AbortSignal): Promise<StepOutcome> {
    if (stop.aborted) return { exitCode: null, limit: "killed" };
    const problem = await this.dirProblem(run.step.dir);
    if (problem) return { exitCode: null, message: problem };
    const image = run.step.image ?? this.options.defaultImage;
    if (!run.step.image) io.write(Buffer.from(`[airlock] step ${run.step.key} names no image; using the executor's default image ${image}\n`), "stderr");
    const config = containerConfig({
      image,
      run,
      workspace: this.spec.workspace,
      resources: this.spec.resources,
      labels: this.spec.labels,
      ociRuntime: this.options.ociRuntime,
      network: this.spec.network,
    });
    let id: string | undefined;
    let socket: Duplex | undefined;
    let watch: PidsWatch | undefined;
    try {
      id = await this.create(image, config, run.step.key, io, stop);
      if (stop.aborted) throw new StepAborted();
      this.spec.logger.debug("step container created", { container: id.slice(0, 12), image, step: run.step.key });
      const [attach, wait] = await Promise.allSettled([this.client.attach(id), this.client.waitNextExit(id)]);
      if (attach.status === "fulfilled") socket = attach.value;
      if (attach.status === "rejected") throw attach.reason;
      if (wait.status === "rejected") throw wait.reason;
      const attached = attach.value;
      const waitExit = wait.value;
      const demuxer = new Demuxer((chunk, stream) => io.write(chunk, stream));
      const outputEnded = new Promise<void>((resolve) => {
        attached.on("data", (chunk: Buffer) => demuxer.push(chunk));
        attached.once("end", resolve);
        attached.once("close", resolve);
        attached.once("error", () => resolve());
      });
      const exited = waitExit();
      exited.catch(() => undefined);
      if (stop.aborted) throw new StepAborted();
      try {
        await this.client.start(id);
      } catch (error) {
        return { exitCode: null, message: `could not start a container from image ${image}: ${coerceError(error).message}` };
      }
      watch = PidsWatch.start(id);
      const result = await until(exited, stop);
      await until(Promise.race([outputEnded, new Promise((resolve) => setTimeout(resolve, OUTPUT_GRACE_MS).unref())]), stop);
      const pidsHit = watch.stop();
      return await this.outcome(id, result.StatusCode, result.Error?.Message, pidsHit);
    } catch (error) {
      if (error instanceof StepAborted || stop.aborted) {
        const pidsHit = watch?.stop() ?? false;
        return pidsHit ? { exitCode: null, limit: "pids", message: `${this.pidsMessage()}; then it was stopped` } : { exitCode: null, limit: "killed" };
      }
      // The daemon or the image failed us, not the step: the attempt errors and is retried.
      if (error instanceof SandboxError || error instanceof UnavailableError) throw error;
      return { exitCode: null, message: coerceError(error).message };
    } finally {
      watch?.stop();
      socket?.destroy();
      if (id) await this.remove(id);
    }
  }

  /** Creates the step's container, pulling its image first when the daemon does not have it. */
  private async create(image: string, config: object, stepKey: string, io: StepIO, stop: AbortSignal): Promise<string> {
    const name = `airlock-${this.spec.jobId}-${this.spec.attempt}-${stepKey}-${randomBytes(3).toString("hex")}`;
    try {
      return await this.client.createContainer(name, config);
    } catch (error) {
      if (!(error instanceof DockerApiError && error.httpStatus === 404)) {
        throw new SandboxError(`could not create a container from image ${image}: ${coerceError(error).message}`);
      }
    }
    const ref = parseImageRef(image);
    io.write(Buffer.from(`[airlock] image ${image} is not on this host; pulling it\n`), "stderr");
    const started = Date.now();
    try {
      await until(this.client.pull(ref.repository, ref.tag, registryAuthHeader(ref, this.spec.registryAuth), stop), stop);
    } catch (error) {
      if (error instanceof StepAborted) throw error;
      throw new SandboxError(`image ${image} is not on this host and could not be pulled: ${coerceError(error).message}`);
    }
    io.write(Buffer.from(`[airlock] pulled ${image} in ${Date.now() - started} ms\n`), "stderr");
    return this.client.createContainer(name, config);
  }

  private async outcome(id: string, exitCode: number, error: string | undefined, pidsHit: boolean): Promise<StepOutcome> {
    if (exitCode !== 0) {
      const state = await this.client.inspect(id).then(
        (info) => info.State,
        () => undefined,
      );
      const limit = this.spec.resources.memoryBytes;
      if (state?.OOMKilled) {
        return { exitCode, limit: "memory", message: `ran out of memory and was killed (memory limit ${limit ? formatSize(limit) : "of the host"})` };
      }
      // gVisor enforces the memory limit inside its own kernel: the process gets SIGKILL (exit
      // 137) and Docker never sees an OOM. Only our own kills would also look like that, and
      // those end the step through its signal before an outcome is made.
      if (this.options.ociRuntime && limit && exitCode === 137 && !pidsHit) {
        return { exitCode, limit: "memory", message: `was killed (SIGKILL), under gVisor the sign of going over its memory limit of ${formatSize(limit)}` };
      }
    }
    if (pidsHit && exitCode !== 0) return { exitCode, limit: "pids", message: `${this.pidsMessage()} (exit code ${exitCode})` };
    if (error) return { exitCode, message: `container error: ${error}` };
    return { exitCode };
  }

  private pidsMessage(): string {
    const limit = this.spec.resources.pids ?? DEFAULT_PIDS_LIMIT;
    const how = this.options.ociRuntime ? "; gVisor stops the whole sandbox when it is reached" : ", so new processes could not start";
    return `hit its pids limit of ${limit} processes${how}`;
  }

  private async remove(id: string): Promise<void> {
    try {
      await this.client.remove(id);
    } catch (error) {
      this.spec.logger.warn("could not remove a step container", { container: id, error: coerceError(error).message });
    }
  }

  /** Docker would create a missing working dir, inside the container; the step dir must exist in the workspace. */
  private async dirProblem(dir: string): Promise<string | undefined> {
    const path = join(this.spec.workspace, dir);
    try {
      const info = await stat(path);
      if (!info.isDirectory()) return `step dir "${dir}" is not a directory`;
      const [real, root] = await Promise.all([realpath(path), realpath(this.spec.workspace)]);
      if (real !== root && !real.startsWith(root + sep)) return `step dir "${dir}" leads outside the workspace`;
      return undefined;
    } catch {
      return `step dir "${dir}" does not exist in the workspace`;
    }
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    this.destroyed.abort();
    await this.running?.catch(() => undefined);
    const labels = [LABEL.executor, LABEL.job, LABEL.attempt].map((label) => `${label}=${this.spec.labels[label] ?? ""}`);
    const left = await this.client.list(labels).catch((error: unknown) => {
      this.spec.logger.warn("could not list this job's containers", { error: coerceError(error).message });
      return [];
    });
    await Promise.all(left.map((container) => this.remove(container.Id)));
  }
}
