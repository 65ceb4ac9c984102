/**
 * The sandbox seam. A Runtime builds one Sandbox per job; the sandbox runs the job's steps in
 * order on the job's workspace and is destroyed after the last one. Each runtime lives in its own
 * folder (shell/, bwrap/, docker/, ...) and is chosen by name or by probing (`auto`).
 *
 * Contract for every implementation:
 * - the workspace is the only host path a step can write; nothing else of the host is visible
 *   beyond what the runtime's isolation level promises;
 * - `exec` resolves once the step ended: with its exit code, or with `limit` set when the sandbox
 *   killed it; when `signal` aborts, everything the step started is killed. It rejects (with a
 *   SandboxError or UnavailableError) only when the sandbox itself broke, e.g. its daemon went
 *   away or the step's image cannot be had: the attempt then errors and is retried;
 * - `destroy` is idempotent and leaves nothing running;
 * - everything created is labelled with `labels` so `reapLeftovers` can find what a dead executor
 *   left behind.
 */
import type { Logger } from "../common/logger.ts";
import type { Isolation, ResourceLimits, StepSpec, WarmPoolReport } from "../protocol/index.ts";

export interface SandboxSpec {
  jobId: number;
  attempt: number;
  executorName: string;
  /** Host path of the job's workspace (the repository checkout). */
  workspace: string;
  /** Host directory private to this sandbox, for the runtime's own files; removed after the job. */
  scratchDir: string;
  resources: ResourceLimits;
  /** Stamped on everything the runtime creates: containers, cgroups, processes, VMs. */
  labels: Record<string, string>;
  registryAuth?: Record<string, { username: string; password: string }> | undefined;
  /** The job's only way out (network: internet); undefined: no network at all. */
  network?: SandboxNetwork | undefined;
  logger: Logger;
}

/**
 * Egress for a sandbox: the executor's per-job gateway listens on a unix socket; the runtime
 * bridges only that socket into the sandbox, where the forwarder (a static binary) serves the
 * proxy ports on the sandbox's own loopback (SANDBOX_PROXY) and relays to the socket.
 */
export interface SandboxNetwork {
  /** Host path of the gateway's unix socket. */
  gatewaySocket: string;
  /** Host path of the static forwarder binary (src/egress/forwarder). */
  forwarder: string;
}

/** Beside the gateway's socket: the /etc/resolv.conf for sandboxes (the forwarder answers DNS on loopback). */
export const RESOLV_CONF = "resolv.conf";

/** What steps with a network see inside the sandbox: proxies on the sandbox's loopback. */
export const SANDBOX_PROXY = { http: "http://127.0.0.1:3128", socks: "socks5h://127.0.0.1:1080", dns: "127.0.0.1" } as const;

/** Where steps see the workspace in every runtime that isolates them (shell: at its host path). */
export const SANDBOX_WORKSPACE = "/work";

/** Where a step's output goes; called as output arrives. */
export interface StepIO {
  write(chunk: Uint8Array, stream: "stdout" | "stderr"): void;
}

export interface StepRun {
  step: StepSpec;
  /** Environment for the step: the step's env, the job's secrets and AIRLOCK_* variables. */
  env: Record<string, string>;
  /** The step's commands as one script for /bin/sh. */
  script: string;
}

export type LimitHit = "memory" | "pids" | "disk" | "killed";

export interface StepOutcome {
  /** Exit code, or null when the step was killed by a signal. */
  exitCode: number | null;
  /** Set when the sandbox knows a limit ended the step. */
  limit?: LimitHit | undefined;
  /** A sentence for the log and the job's failure message. */
  message?: string | undefined;
}

export interface Sandbox {
  readonly id: string;
  exec(run: StepRun, io: StepIO, signal: AbortSignal): Promise<StepOutcome>;
  destroy(): Promise<void>;
}

/** What the executor tells a runtime when it starts. */
export interface RuntimeStart {
  /** The egress forwarder jobs with a network get (SandboxNetwork.forwarder); none: no job has a network. */
  forwarder?: string | undefined;
}

export interface ProbeResult {
  usable: boolean;
  /** Why not, and how to fix it, when not usable; what was found, when usable. */
  detail: string;
}

export interface Runtime {
  readonly name: string;
  readonly isolation: Isolation;
  /**
   * True when the sandbox itself bounds the workspace's size (a VM disk). Otherwise the executor
   * measures the workspace while steps run and stops a step that passes `resources.diskBytes`.
   */
  readonly enforcesDiskLimit?: boolean;
  /**
   * True when `createSandbox` reads the workspace (a VM copies it onto its disk), so the workspace
   * must be complete first. Otherwise the executor checks out the repository while the sandbox is
   * being made.
   */
  readonly readsWorkspaceAtCreate?: boolean;
  probe(): Promise<ProbeResult>;
  createSandbox(spec: SandboxSpec, signal: AbortSignal): Promise<Sandbox>;
  /** Removes what dead executors of this host left behind (see labels.ts); returns how many things. */
  reapLeftovers?(): Promise<number>;
  /** Called once when the executor starts taking jobs (microvm: starts filling its warm pools). */
  start?(host?: RuntimeStart): Promise<void>;
  /** Called once when the executor stops: ends what `start` began (microvm: kills idle warm VMs). */
  close?(): Promise<void>;
  /** Its warm pool now (microvm with --warm-vms), for heartbeats; undefined without one. */
  warmPool?(): WarmPoolReport | undefined;
}

/** The script a step's commands become: run by /bin/sh, stopping at the first failing command. */
export function stepScript(commands: readonly string[]): string {
  return `set -e\n${commands.join("\n")}\n`;
}
