/** The configuration of `airlock batch run --local`, built once from flags, env and defaults, then frozen. */
import { hostname } from "node:os";
import { resolve } from "node:path";
import { ConfigSource, type Env, type Flags } from "../../common/config-source.ts";
import { ValidationError } from "../../protocol/index.ts";
import { DEFAULT_DOCKER_HOST, DEFAULT_GVISOR_RUNTIME, DEFAULT_STEP_IMAGE, RUNTIME_NAMES } from "../../runtimes/index.ts";

export interface LocalBatchConfig {
  /** A runtime name, or "auto" for the strongest usable one. */
  runtime: string;
  /** Repositories (or workspaces) run at once. */
  parallel: number;
  upload: boolean;
  /** Where `--no-upload` writes the diffs. */
  outDir: string | undefined;
  /** Image caches (bwrap, microvm) and the workspaces of running jobs. */
  dataDir: string;
  workspaceRoot: string;
  images: string[];
  hostPath: string;
  dockerHost: string;
  gvisorRuntime: string;
  defaultImage: string;
  /** Names this run's sandboxes (labels, cgroups, containers): unique to this process. */
  name: string;
  /** Live table (a terminal) or plain lines. */
  tty: boolean;
  logLevel: "debug" | "info" | "warn" | "error" | "silent";
}

export function resolveLocalBatchConfig(flags: Flags, env: Env, tty: boolean): Readonly<LocalBatchConfig> {
  const source = new ConfigSource(flags, env);
  const runtime = source.string("runtime", "AIRLOCK_RUNTIME", "auto");
  if (!(RUNTIME_NAMES as readonly string[]).includes(runtime)) throw new ValidationError(`--runtime: unknown runtime "${runtime}" (known: ${RUNTIME_NAMES.join(", ")})`, { field: "runtime" });
  const dockerHost = source.string("dockerHost", "DOCKER_HOST", DEFAULT_DOCKER_HOST);
  if (!/^(unix:\/\/)?\//.test(dockerHost)) throw new ValidationError(`--docker-host: "${dockerHost}" is not a unix socket (unix:///path or /path)`, { field: "dockerHost" });
  // commander turns --no-upload into upload: false.
  const upload = flags.upload !== false;
  const out = source.string("out", undefined);
  if (out !== undefined && upload) throw new ValidationError("--out goes with --no-upload (uploaded results are read with `airlock batch diff`)", { field: "out" });
  const dataDir = resolve(source.string("workDir", "AIRLOCK_LOCAL_DATA", ".airlock-local"));
  return Object.freeze({
    runtime,
    parallel: source.integer("jobs", "AIRLOCK_LOCAL_JOBS", 4, 1, 64),
    upload,
    outDir: upload ? undefined : resolve(out ?? "batch-results"),
    dataDir,
    workspaceRoot: resolve(dataDir, "workspaces"),
    images: source.list("images", "AIRLOCK_IMAGES", []).map((path) => resolve(path)),
    hostPath: env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    dockerHost,
    gvisorRuntime: source.string("gvisorRuntime", "AIRLOCK_GVISOR_RUNTIME", DEFAULT_GVISOR_RUNTIME),
    defaultImage: source.string("defaultImage", "AIRLOCK_DEFAULT_IMAGE", DEFAULT_STEP_IMAGE),
    name: `local-${hostname()}-${process.pid}`,
    tty,
    logLevel: source.oneOf("logLevel", "AIRLOCK_LOG_LEVEL", ["debug", "info", "warn", "error", "silent"] as const, "warn"),
  });
}
