/**
 * The bwrap runtime (isolation `namespace`): each step runs in a bubblewrap sandbox on the
 * root filesystem of its image, with no network, no capabilities, a seccomp filter, and the
 * job's limits enforced by a cgroup. No daemon is needed: images come from OCI layouts and
 * archives, or from a local Docker daemon when one answers (see ../images/store.ts).
 *
 * The cgroup setup and the seccomp filter file are prepared once, on first use (`ready`), and
 * shared by every sandbox; probe() tries a real sandbox.
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { run as runCommand } from "../../common/exec.ts";
import type { Logger } from "../../common/logger.ts";
import { SandboxError } from "../../protocol/index.ts";
import { socketPathOf } from "../docker/client.ts";
import { DEFAULT_DOCKER_HOST, DEFAULT_STEP_IMAGE } from "../docker/defaults.ts";
import { isLeftover, LABEL } from "../labels.ts";
import type { ProbeResult, Runtime, Sandbox, SandboxSpec } from "../runtime.ts";
import { namespaceArgs } from "./args.ts";
import { detectCgroups } from "./cgroup-detect.ts";
import { Cgroups, groupExecutorPid, groupName, type CgroupLimits } from "./cgroups.ts";
import { ImageStore } from "../images/store.ts";
import { BwrapSandbox, type SandboxContext } from "./sandbox.ts";
import { buildSeccompFilter, seccompSupported } from "./seccomp.ts";

/** Processes a job may run at once when it names no pids limit: enough for builds, not for a fork bomb. */
export const DEFAULT_PIDS_LIMIT = 4096;
/** Mount points bwrap needs in every root filesystem (it cannot create them in a read-only one). */
export const MOUNT_POINTS = ["proc", "dev", "tmp", "work"] as const;
/** Processes of the runtime's own in a job's cgroup: the launcher and bwrap's monitor. */
const RUNTIME_PROCESSES = 2;

export interface BwrapRuntimeOptions {
  /** PATH to find bwrap on. */
  path: string;
  /** The executor's data dir: images are unpacked under <dataDir>/bwrap. */
  dataDir: string;
  /** OCI image layouts, OCI archives, or directories holding layouts (`--images`). */
  images: readonly string[];
  /** A Docker daemon to take images from when no OCI source has them (unix:///path or /path). */
  dockerHost?: string | undefined;
  /** Image for steps that name none. */
  defaultImage?: string | undefined;
  logger: Logger;
}

function findOnPath(name: string, path: string): string | undefined {
  for (const dir of path.split(":")) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

export class BwrapRuntime implements Runtime {
  readonly name = "bwrap";
  readonly isolation = "namespace" as const;
  readonly images: ImageStore;
  private readonly options: BwrapRuntimeOptions;
  private readonly cacheDir: string;
  private readonly logger: Logger;
  private context: Promise<SandboxContext> | undefined;

  constructor(options: BwrapRuntimeOptions) {
    this.options = options;
    this.cacheDir = join(options.dataDir, "bwrap");
    this.logger = options.logger.child({ runtime: "bwrap" });
    this.images = new ImageStore({
      cacheDir: this.cacheDir,
      sources: options.images,
      dockerSocket: socketPathOf(options.dockerHost ?? DEFAULT_DOCKER_HOST),
      mountPoints: MOUNT_POINTS,
      logger: this.logger,
    });
  }

  /** The shared parts every sandbox needs, made once; a failure is retried at the next call. */
  private ready(): Promise<SandboxContext> {
    this.context ??= this.prepare().catch((error: unknown) => {
      this.context = undefined;
      throw error;
    });
    return this.context;
  }

  private async prepare(): Promise<SandboxContext> {
    const bwrap = findOnPath("bwrap", this.options.path);
    if (!bwrap) throw new SandboxError("bwrap is not installed (Debian: apt-get install bubblewrap)");
    if (!seccompSupported()) throw new SandboxError(`no seccomp filter for the ${process.arch} architecture`);
    const layout = await detectCgroups();
    if ("problem" in layout) throw new SandboxError(`cannot limit jobs: ${layout.problem}`);
    const cgroups = await Cgroups.prepare(layout).catch((error: unknown) => {
      throw new SandboxError(`cannot set up cgroups: ${(error as Error).message}`);
    });
    await mkdir(this.cacheDir, { recursive: true, mode: 0o700 });
    const seccompFile = join(this.cacheDir, `seccomp-${process.arch}.bpf`);
    await writeFile(seccompFile, buildSeccompFilter());
    return { bwrap, seccompFile, images: this.images, cgroups, defaultImage: this.options.defaultImage ?? DEFAULT_STEP_IMAGE };
  }

  async probe(): Promise<ProbeResult> {
    let context: SandboxContext;
    try {
      context = await this.ready();
    } catch (error) {
      return { usable: false, detail: (error as Error).message };
    }
    // A real sandbox on the host's own root, with every namespace and the seccomp filter.
    const args = [...namespaceArgs(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--seccomp", "3", "--", "/bin/true"];
    const result = await runCommand("/bin/sh", ["-c", `exec "$0" "$@" 3<"${context.seccompFile}"`, context.bwrap, ...args], { env: {} }).catch((error: unknown) => ({
      code: null,
      stderr: (error as Error).message,
    }));
    if (result.code !== 0) {
      const why = result.stderr.trim().split("\n").pop() ?? "";
      const hint = /user namespace|Operation not permitted|No permissions/i.test(why) ? " (are unprivileged user namespaces disabled? sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)" : "";
      return { usable: false, detail: `bwrap cannot build a sandbox here: ${why}${hint}` };
    }
    const version = await runCommand(context.bwrap, ["--version"], { env: {} }).then(
      (out) => out.stdout.toString().trim(),
      () => "bwrap",
    );
    return { usable: true, detail: `${version}; ${context.cgroups.describe()}; seccomp on; images: ${await this.images.catalog.describe()}` };
  }

  async createSandbox(spec: SandboxSpec, _signal?: AbortSignal): Promise<Sandbox> {
    const context = await this.ready();
    const limits: CgroupLimits = { cpus: spec.resources.cpus, memoryBytes: spec.resources.memoryBytes, pids: spec.resources.pids ?? DEFAULT_PIDS_LIMIT };
    const executorPid = Number(spec.labels[LABEL.executorPid] ?? process.pid);
    const group = groupName(spec.jobId, spec.attempt, executorPid, spec.executorName);
    // The launcher shell and bwrap's monitor process live in the group too; they are not the job's.
    const groupLimits = { ...limits, pids: (limits.pids ?? DEFAULT_PIDS_LIMIT) + RUNTIME_PROCESSES };
    await context.cgroups.create(group, groupLimits).catch(async (error: unknown) => {
      await context.cgroups.remove(group).catch(() => undefined);
      throw new SandboxError(`cannot create cgroup ${group}: ${(error as Error).message}`);
    });
    const sandbox = new BwrapSandbox(spec, context, group, limits);
    // The launcher's move into the cgroup is slow (see launcher.ts): pay it now, not in the first step.
    await sandbox.launcher().catch(async (error: unknown) => {
      await sandbox.destroy().catch(() => undefined);
      throw new SandboxError(`cannot start the step launcher in cgroup ${group}: ${(error as Error).message}`);
    });
    return sandbox;
  }

  /** Removes the cgroups (killing what is in them) and half-unpacked images of dead executors. */
  async reapLeftovers(): Promise<number> {
    let reaped = 0;
    try {
      const { cgroups } = await this.ready();
      for (const name of await cgroups.list()) {
        const pid = groupExecutorPid(name);
        // Cgroups are this host's own, so only the executor pid tells whose a group is.
        if (pid === undefined || !isLeftover({ [LABEL.host]: hostname(), [LABEL.executorPid]: String(pid) })) continue;
        await cgroups.remove(name);
        this.logger.warn("removed the cgroup of a dead executor", { cgroup: name });
        reaped += 1;
      }
    } catch (error) {
      this.logger.warn("could not look for leftover cgroups", { error: String(error) });
    }
    return reaped + (await this.images.reapTemporary());
  }
}
