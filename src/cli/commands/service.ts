/**
 * `airlock server install service` and `airlock executor install service`: write a systemd unit
 * that runs the command with the flags given. The flags go through the same config parser the
 * command itself uses, so a unit is only written for flags that command would start with.
 */
import type { Command } from "commander";
import { existsSync, readFileSync, renameSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Env, Flags } from "../../common/config-source.ts";
import { resolveCoordinatorConfig } from "../../coordinator/config.ts";
import { resolveExecutorConfig } from "../../executor/config.ts";
import { ValidationError } from "../../protocol/index.ts";
import { println, type CliIO } from "../context.ts";
import { renderUnit, type ServiceRole } from "../service-unit.ts";

/** Flags of `install service` itself; every other flag given is the service's. */
const INSTALL_FLAGS = new Set(["unitDir", "dryRun", "user", "exec", "envFile", "unitName"]);

/** Flags naming files or dirs: made absolute, since the unit runs elsewhere than this shell. */
const PATH_FLAGS = new Set(["data", "tlsCert", "tlsKey", "webDir", "apiTokenFile", "executorTokenFile", "tokenFile", "ca", "images", "workspaceRoot", "secretsKeyFile", "previousSecretsKeyFile"]);

/** Secrets refused on the command line: a unit file and `ps` are readable by every local user. */
const SECRET_FLAGS: Record<ServiceRole, Record<string, string>> = {
  server: { executorToken: "--executor-token-file FILE, or AIRLOCK_EXECUTOR_TOKEN", apiToken: "--api-token-file FILE, or AIRLOCK_API_TOKEN" },
  executor: { token: "--token-file FILE, or AIRLOCK_EXECUTOR_TOKEN" },
};

const SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

interface InstallFlags {
  unitDir?: string;
  dryRun?: boolean;
  user?: string;
  exec?: string;
  envFile?: string;
  unitName?: string;
}

export function installServiceCommand(role: ServiceRole, command: Command, io: CliIO): number {
  const install = command.opts<InstallFlags>();
  const unitName = install.unitName ?? (role === "server" ? "airlock-server" : "airlock-executor");
  if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,200}$/.test(unitName)) throw new ValidationError(`--unit-name: "${unitName}" is not a unit name (letters, digits, _ . @ -)`, { field: "unitName" });
  const envFile = resolve(install.envFile ?? `/etc/airlock/${role === "server" ? "server" : "executor"}.env`);
  const user = install.user ?? "airlock";
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) throw new ValidationError(`--user: "${user}" is not a user name`, { field: "user" });
  const stateDirectory = unitName.replace(/\.service$/, "");

  const { flags, args } = serviceFlags(role, command, envFile);
  if (flags.data === undefined) {
    flags.data = `/var/lib/${stateDirectory}`;
    args.push("--data", flags.data);
  }
  // The service's own view: the env file (if this shell can read it) and systemd's PATH, nothing of this shell.
  const env: Env = { PATH: SERVICE_PATH, ...readEnvFile(envFile) };
  const stateDir = `/var/lib/${stateDirectory}`;
  const spec = role === "server" ? serverSpec(flags, env) : executorSpec({ ...flags, coordinatorData: join(stateDir, ".airlock") }, env, envFile);
  const exec = resolve(install.exec ?? defaultLauncher());
  if (!existsSync(exec)) throw new ValidationError(`--exec: "${exec}" does not exist`, { field: "exec" });
  const unit = renderUnit({
    role,
    exec,
    args,
    user,
    group: user,
    stateDirectory,
    readWritePaths: spec.dirs.filter((dir) => !within(dir, stateDir)),
    workingDirectory: within(spec.dirs[0] ?? stateDir, stateDir) ? stateDir : (spec.dirs[0] ?? stateDir),
    environmentFile: envFile,
    timeoutStopSec: spec.timeoutStopSec,
    supplementaryGroups: spec.groups.filter(groupExists),
    delegateCgroup: spec.delegateCgroup,
    noNewPrivileges: !setuidBwrap(),
    notes: [...spec.notes, ...spec.groups.filter((group) => !groupExists(group)).map((group) => `No "${group}" group on this host, so none is added: ${GROUP_NEEDS[group] ?? "a runtime needs it"}.`)],
  });
  if (install.dryRun) {
    io.stdout.write(unit);
    return 0;
  }
  const unitDir = resolve(install.unitDir ?? "/etc/systemd/system");
  mkdirSync(unitDir, { recursive: true });
  const path = join(unitDir, `${unitName}.service`);
  writeFileSync(`${path}.tmp`, unit, { mode: 0o644 });
  renameSync(`${path}.tmp`, path);
  println(io.stdout, `wrote ${path}`);
  if (!userExists(user)) println(io.stdout, `user "${user}" does not exist yet: useradd --system --no-create-home --home-dir ${stateDir} --shell /usr/sbin/nologin ${user}`);
  println(io.stdout, `then: systemctl daemon-reload && systemctl enable --now ${unitName}`);
  return 0;
}

/** The service's flags as given (commander knows which came from the command line), paths made absolute. */
function serviceFlags(role: ServiceRole, command: Command, envFile: string): { flags: Record<string, string | boolean>; args: string[] } {
  const flags: Record<string, string | boolean> = {};
  const args: string[] = [];
  for (const option of command.options) {
    const key = option.attributeName();
    if (INSTALL_FLAGS.has(key) || command.getOptionValueSource(key) !== "cli") continue;
    const secretAdvice = SECRET_FLAGS[role][key];
    if (secretAdvice) {
      throw new ValidationError(`${option.long}: a secret on the command line would be readable by every local user (in the unit file and in ps); use ${secretAdvice} in ${envFile}`, { field: key });
    }
    const value: unknown = command.getOptionValue(key);
    if (typeof value === "boolean") {
      flags[key] = value;
      if (value) args.push(option.long ?? "");
      continue;
    }
    let text = String(value);
    if (key === "database" && /^postgres(ql)?:\/\/[^/@]*:[^/@]*@/.test(text)) {
      throw new ValidationError(`--database: the URL holds a password, which would be readable by every local user; set AIRLOCK_DATABASE_URL in ${envFile} instead`, { field: key });
    }
    if (PATH_FLAGS.has(key)) text = text.split(",").map((part) => (part.trim() ? resolve(part.trim()) : part)).join(",");
    flags[key] = text;
    args.push(option.long ?? "", text);
  }
  return { flags, args };
}

interface RoleSpec {
  /** Dirs the service writes, the data dir first. */
  dirs: string[];
  timeoutStopSec: number;
  groups: string[];
  delegateCgroup: boolean;
  notes: string[];
}

function serverSpec(flags: Flags, env: Env): RoleSpec {
  const config = resolveCoordinatorConfig(flags, env);
  // Closing waits for held dequeues (aborted at once) and requests in flight; a margin over the longest hold.
  return { dirs: [config.dataDir], timeoutStopSec: Math.ceil(config.maxDequeueWaitMs / 1000) + 30, groups: [], delegateCgroup: false, notes: [] };
}

const GROUP_NEEDS: Record<string, string> = {
  docker: "the docker and gvisor runtimes talk to dockerd's socket",
  kvm: "the microvm runtime opens /dev/kvm (without it, VMs run under TCG)",
};

/** `coordinatorData` is where the service would look for a local coordinator's token: under its working dir. */
function executorSpec(flags: Flags, env: Env, envFile: string): RoleSpec {
  let config: ReturnType<typeof resolveExecutorConfig>;
  try {
    config = resolveExecutorConfig(flags, env);
  } catch (error) {
    if (error instanceof ValidationError && error.field === "token") {
      throw new ValidationError(`no executor token for the service: pass --token-file FILE (readable by the service's user), or set AIRLOCK_EXECUTOR_TOKEN in ${envFile}`, { field: "token" });
    }
    throw error;
  }
  const runtime = config.runtime;
  const uses = (name: string): boolean => runtime === name || runtime === "auto";
  const groups = [...(uses("docker") || uses("gvisor") ? ["docker"] : []), ...(uses("microvm") ? ["kvm"] : [])];
  const dirs = [config.dataDir, ...(within(config.workspaceRoot, config.dataDir) ? [] : [config.workspaceRoot])];
  // A drain lets each running job finish, and no job runs longer than --max-runtime; then its
  // results are uploaded. Past this, systemd kills what is left and the jobs are retried elsewhere.
  const timeoutStopSec = Math.ceil(config.maxRuntimeMs / 1000) + 120;
  const notes = [`Runtime ${runtime}; stop waits up to --max-runtime (${Math.round(config.maxRuntimeMs / 1000)}s) plus 120s for running jobs to finish.`];
  if (uses("docker") || uses("gvisor")) notes.push("The docker group is root-equivalent on this host: whoever runs as this user controls dockerd.");
  return { dirs, timeoutStopSec, groups, delegateCgroup: uses("bwrap") || uses("microvm"), notes };
}

function within(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/** KEY=value lines (quotes stripped), as systemd reads an EnvironmentFile; nothing when unreadable. */
function readEnvFile(path: string): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return {};
  }
  const env: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!match || line.trimStart().startsWith("#")) continue;
    const [, key = "", raw = ""] = match;
    env[key] = /^(["']).*\1$/.test(raw) ? raw.slice(1, -1) : raw;
  }
  return env;
}

function namesIn(file: string): Set<string> {
  try {
    return new Set(readFileSync(file, "utf8").split("\n").map((line) => line.split(":")[0] ?? ""));
  } catch {
    return new Set();
  }
}

const groupExists = (group: string): boolean => namesIn("/etc/group").has(group);
const userExists = (user: string): boolean => namesIn("/etc/passwd").has(user);

function setuidBwrap(): boolean {
  for (const dir of SERVICE_PATH.split(":")) {
    const path = join(dir, "bwrap");
    if (existsSync(path)) return (statSync(path).mode & 0o4000) !== 0;
  }
  return false;
}

/** bin/airlock of this package: the nearest directory above this module holding one. */
function defaultLauncher(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "bin", "airlock")) && existsSync(join(dir, "package.json"))) return join(dir, "bin", "airlock");
    const parent = dirname(dir);
    if (parent === dir) throw new ValidationError("cannot find bin/airlock above this module: pass --exec PATH", { field: "exec" });
    dir = parent;
  }
}
