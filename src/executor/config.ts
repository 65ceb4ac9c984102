/** The executor's configuration, built once from flags, env and defaults, then frozen. */
import { hostname } from "node:os";
import { resolve } from "node:path";
import { ConfigSource, type Env, type Flags } from "../common/config-source.ts";
import type { LogLevel } from "../common/logger.ts";
import { readTokenFile, readTokenList } from "../common/token-files.ts";
import { EgressRuleText, NETWORK_MODES, QueueName, ValidationError, type NetworkMode } from "../protocol/index.ts";
import { DEFAULT_DOCKER_HOST, DEFAULT_GVISOR_RUNTIME, DEFAULT_STEP_IMAGE } from "../runtimes/index.ts";

export interface ExecutorConfig {
  /** Coordinator URLs; the first is used until it cannot be reached, then the next. */
  urls: string[];
  token: string;
  /** PEM file of a private CA that signed the coordinator's certificate. */
  caPath: string | undefined;
  queues: string[];
  /** A runtime name, or "auto" for the strongest usable one. */
  runtime: string;
  maxJobs: number;
  dataDir: string;
  /** OCI image layouts, OCI archives, or directories holding layouts (daemonless runtimes: bwrap, microvm). */
  images: string[];
  workspaceRoot: string;
  /** No job runs longer than this, whatever its own timeout says. */
  maxRuntimeMs: number;
  heartbeatIntervalMs: number;
  /** Per-job log cap; beyond it, head and tail are kept and the gap is stated. */
  logCapBytes: number;
  /** Executor name: hostname plus a random suffix, new at every start. */
  name: string;
  logLevel: LogLevel;
  logFormat: "text" | "json";
  hostPath: string;
  /** Docker Engine socket (docker and gvisor runtimes): unix:///path or /path. */
  dockerHost: string;
  /** Name runsc is registered under in dockerd (gvisor runtime). */
  gvisorRuntime: string;
  /** Image for steps that name none (docker and gvisor runtimes). */
  defaultImage: string;
  /** What network the executor gives jobs: `internet` through its egress gateway, or `none`. */
  network: NetworkMode;
  /** Destinations let through although the gateway would refuse them (a private mirror); see docs/network.md. */
  egressAllow: string[];
  /** Destinations refused although public. */
  egressDeny: string[];
  /** Gateway connections open at once per job, unless the job asks for fewer. */
  egressMaxConnections: number;
  /** Size cap of the repository cache in `<data>/repo-cache`; 0: no cache, every job fetches afresh. */
  repoCacheMaxBytes: number;
  /** Size cap of the npm package cache in `<data>/package-cache` (docs/indexing.md); 0: none. */
  packageCacheMaxBytes: number;
  /** Pre-booted, never-used VMs the microvm runtime keeps for jobs (default: --max-jobs). */
  warmVms: number;
  /** Idle warm VMs older than this are replaced. */
  warmVmMaxAgeMs: number;
  /** How the warm pool makes VMs: restored from a snapshot of a booted guest, or booted. */
  warmVmRefill: "restore" | "boot";
}

/** A name suffix, not a secret (Math.random keeps OpenSSL out of the executor's memory). */
function randomSuffix(): string {
  return Math.floor(Math.random() * 0xffffffff)
    .toString(16)
    .padStart(8, "0");
}

/** What runtimes need of an executor's config, for commands that talk to no coordinator (install, test-vm). */
export type RuntimeHostConfig = Pick<ExecutorConfig, "dataDir" | "images" | "hostPath" | "dockerHost" | "gvisorRuntime" | "defaultImage" | "logLevel" | "logFormat"> & {
  /** Kernel for the microVM guest (`executor install microvm`); undefined: the newest /boot/vmlinuz-*. */
  kernel: string | undefined;
};

export function resolveRuntimeHostConfig(flags: Flags, env: Env): Readonly<RuntimeHostConfig> {
  const source = new ConfigSource(flags, env);
  const dockerHost = source.string("dockerHost", "DOCKER_HOST", DEFAULT_DOCKER_HOST);
  if (!/^(unix:\/\/)?\//.test(dockerHost)) {
    throw new ValidationError(`--docker-host: "${dockerHost}" is not a unix socket (unix:///path or /path); only a local Docker daemon is supported`, { field: "dockerHost" });
  }
  const kernel = source.string("kernel", "AIRLOCK_MICROVM_KERNEL");
  return Object.freeze({
    dataDir: resolve(source.string("data", "AIRLOCK_EXECUTOR_DATA", ".airlock-executor")),
    images: source.list("images", "AIRLOCK_IMAGES", []).map((path) => resolve(path)),
    hostPath: env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    dockerHost,
    gvisorRuntime: source.string("gvisorRuntime", "AIRLOCK_GVISOR_RUNTIME", DEFAULT_GVISOR_RUNTIME),
    defaultImage: source.string("defaultImage", "AIRLOCK_DEFAULT_IMAGE", DEFAULT_STEP_IMAGE),
    logLevel: source.oneOf("logLevel", "AIRLOCK_LOG_LEVEL", ["debug", "info", "warn", "error", "silent"] as const, "info"),
    logFormat: source.oneOf("logFormat", "AIRLOCK_LOG_FORMAT", ["text", "json"] as const, "text"),
    kernel: kernel === undefined ? undefined : resolve(kernel),
  });
}

export function resolveExecutorConfig(flags: Flags, env: Env): Readonly<ExecutorConfig> {
  const source = new ConfigSource(flags, env);
  const urls = source.list("url", "AIRLOCK_URL", ["http://127.0.0.1:7780"]);
  for (const url of urls) {
    if (!/^https?:\/\/[^/]+/.test(url)) throw new ValidationError(`--url: "${url}" is not an http(s) URL`, { field: "url" });
  }
  const coordinatorData = resolve(source.string("coordinatorData", "AIRLOCK_DATA", ".airlock"));
  const tokenFile = source.string("tokenFile", "AIRLOCK_EXECUTOR_TOKEN_FILE");
  const token =
    source.string("token", "AIRLOCK_EXECUTOR_TOKEN") ?? (tokenFile ? readTokenList(resolve(tokenFile), "--token-file")[0] : readTokenFile(coordinatorData, "executor"));
  if (!token) {
    throw new ValidationError(`no executor token: pass --token-file, --token or AIRLOCK_EXECUTOR_TOKEN (a local coordinator keeps one in ${coordinatorData}/executor-token)`, {
      field: "token",
    });
  }
  const queues = source.list("queues", "AIRLOCK_QUEUES", ["default"]);
  for (const queue of queues) {
    if (!QueueName.safeParse(queue).success) throw new ValidationError(`--queues: "${queue}" is not a queue name`, { field: "queues" });
  }
  const dockerHost = source.string("dockerHost", "DOCKER_HOST", DEFAULT_DOCKER_HOST);
  if (!/^(unix:\/\/)?\//.test(dockerHost)) {
    throw new ValidationError(`--docker-host: "${dockerHost}" is not a unix socket (unix:///path or /path); only a local Docker daemon is supported`, { field: "dockerHost" });
  }
  const dataDir = resolve(source.string("data", "AIRLOCK_EXECUTOR_DATA", ".airlock-executor"));
  const maxJobs = source.integer("maxJobs", "AIRLOCK_MAX_JOBS", 1, 1, 256);
  return Object.freeze({
    urls,
    token,
    caPath: source.string("ca", "AIRLOCK_CA"),
    queues,
    runtime: source.string("runtime", "AIRLOCK_RUNTIME", "auto"),
    maxJobs,
    warmVms: source.integer("warmVms", "AIRLOCK_WARM_VMS", maxJobs, 0, 64),
    warmVmMaxAgeMs: source.durationMs("warmVmMaxAge", "AIRLOCK_WARM_VM_MAX_AGE", "30m"),
    warmVmRefill: source.oneOf("warmVmRefill", "AIRLOCK_WARM_VM_REFILL", ["restore", "boot"] as const, "restore"),
    dataDir,
    images: source.list("images", "AIRLOCK_IMAGES", []).map((path) => resolve(path)),
    workspaceRoot: resolve(source.string("workspaceRoot", "AIRLOCK_WORKSPACE_ROOT", resolve(dataDir, "workspaces"))),
    maxRuntimeMs: source.durationMs("maxRuntime", "AIRLOCK_MAX_RUNTIME", "30m"),
    heartbeatIntervalMs: source.durationMs("heartbeatInterval", "AIRLOCK_HEARTBEAT_INTERVAL", "5s"),
    logCapBytes: source.sizeBytes("logCap", "AIRLOCK_LOG_CAP", "64m"),
    name: source.string("name", "AIRLOCK_EXECUTOR_NAME", `${hostname()}-${randomSuffix()}`),
    logLevel: source.oneOf("logLevel", "AIRLOCK_LOG_LEVEL", ["debug", "info", "warn", "error", "silent"] as const, "info"),
    logFormat: source.oneOf("logFormat", "AIRLOCK_LOG_FORMAT", ["text", "json"] as const, "text"),
    hostPath: env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    dockerHost,
    gvisorRuntime: source.string("gvisorRuntime", "AIRLOCK_GVISOR_RUNTIME", DEFAULT_GVISOR_RUNTIME),
    defaultImage: source.string("defaultImage", "AIRLOCK_DEFAULT_IMAGE", DEFAULT_STEP_IMAGE),
    network: source.oneOf("network", "AIRLOCK_NETWORK", NETWORK_MODES, "internet"),
    egressAllow: egressRules(source.list("egressAllow", "AIRLOCK_EGRESS_ALLOW", []), "egress-allow"),
    egressDeny: egressRules(source.list("egressDeny", "AIRLOCK_EGRESS_DENY", []), "egress-deny"),
    egressMaxConnections: source.integer("egressMaxConnections", "AIRLOCK_EGRESS_MAX_CONNECTIONS", 64, 1, 4096),
    repoCacheMaxBytes: source.string("repoCacheMax", "AIRLOCK_REPO_CACHE_MAX") === "off" ? 0 : source.sizeBytes("repoCacheMax", "AIRLOCK_REPO_CACHE_MAX", "10g"),
    packageCacheMaxBytes: source.string("packageCacheMax", "AIRLOCK_PACKAGE_CACHE_MAX") === "off" ? 0 : source.sizeBytes("packageCacheMax", "AIRLOCK_PACKAGE_CACHE_MAX", "5g"),
  });
}

/** Syntax only; the egress policy reads each entry (and names one it cannot) when the executor starts. */
function egressRules(entries: string[], flag: string): string[] {
  for (const entry of entries) {
    if (!EgressRuleText.safeParse(entry).success) throw new ValidationError(`--${flag}: "${entry}" is not a CIDR, an address, a host or host:port`, { field: flag });
  }
  return entries;
}
