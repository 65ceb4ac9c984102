/**
 * The `airlock` command. This is the one place that reads process.env and argv; everything
 * below gets them as arguments and builds a frozen config from them.
 */
import { Command, Option } from "commander";
import { AirlockError, coerceError } from "../protocol/index.ts";
import { registerBatchCommands } from "./commands/batch.ts";
import { registerIndexCommands } from "./commands/indexes.ts";
import { registerRepoIndexCommands } from "./commands/repo-index.ts";
import { apiClient, type CliIO, type ClientFlags } from "./context.ts";

// Commands load their modules on demand: an executor never loads the coordinator's HTTP server
// or the store, which keeps its memory small.
const admin = () => import("./commands/admin.ts");
const jobsCommands = () => import("./commands/jobs.ts");
const executorCommands = () => import("./commands/executor.ts");

const io: CliIO = { env: process.env, entry: process.argv[1] ?? "", stdout: process.stdout, stderr: process.stderr };

function jobId(value: string): number {
  const id = Number(value);
  if (!Number.isInteger(id) || id <= 0) throw new AirlockError("validation", `"${value}" is not a job id`);
  return id;
}

/** Options every command that talks to the user API takes. */
function withClientOptions(command: Command): Command {
  return command
    .option("--url <url>", "coordinator URL (env AIRLOCK_URL)", undefined)
    .option("--token <token>", "API token (env AIRLOCK_TOKEN; default: read from the data dir)")
    .option("--data <dir>", "local coordinator data dir to find the API token in (env AIRLOCK_DATA)", undefined)
    .option("--ca <file>", "PEM file of a private CA for https (env AIRLOCK_CA)");
}

let exitCode = 0;
async function run(action: () => Promise<number>): Promise<void> {
  exitCode = await action();
}

/** Runs a command that talks to the user API, closing the client afterwards. */
async function withClient(flags: ClientFlags, action: (client: ReturnType<typeof apiClient>) => Promise<number>): Promise<void> {
  const client = apiClient(flags, io);
  try {
    exitCode = await action(client);
  } finally {
    await client.close();
  }
}

const program = new Command("airlock")
  .description("Run untrusted code against git repositories, in sandboxes, on machines you control.")
  .option("-V, --version", "print the version: release, executor protocol, git commit (same as `airlock version`)")
  .showHelpAfterError()
  // `server rotate-secrets-key --data ...`, `server install service --listen ...`: options after a
  // subcommand are its own, not its parent's.
  .enablePositionalOptions();

program
  .command("version")
  .description("print the release, the executor protocol it speaks, and the git commit it was built from")
  .option("--json", "print as JSON")
  .action((flags: { json?: boolean }) => run(async () => (await import("./commands/version.ts")).versionCommand(flags, io)));

const serverOptions = (command: Command): Command =>
  command
    .option("--listen <host:port>", "address to listen on (env AIRLOCK_LISTEN)", undefined)
    .option("--data <dir>", "data dir: SQLite file, mirrors, generated tokens (env AIRLOCK_DATA; default ./.airlock)")
    .option("--executor-token <tokens>", "shared executor token(s), comma-separated: each is accepted (env AIRLOCK_EXECUTOR_TOKEN; default: generated into the data dir)")
    .option("--executor-token-file <files>", "file(s) of executor tokens, one per line, each accepted; read again on SIGHUP (env AIRLOCK_EXECUTOR_TOKEN_FILE)")
    .option("--api-token <tokens>", "API token(s), comma-separated: each is accepted (env AIRLOCK_API_TOKEN; default: generated into the data dir)")
    .option("--api-token-file <files>", "file(s) of API tokens, one per line, each accepted; read again on SIGHUP (env AIRLOCK_API_TOKEN_FILE)")
    .option("--tls-cert <file>", "serve https with this certificate (env AIRLOCK_TLS_CERT)")
    .option("--tls-key <file>", "private key for --tls-cert (env AIRLOCK_TLS_KEY)")
    .option("--database <url>", "postgres:// URL instead of the embedded SQLite; several coordinators may share one (env AIRLOCK_DATABASE_URL)")
    .option("--queue-weights <list>", "share of dequeues per queue among an executor's non-empty queues, e.g. batch=4,default=1 (env AIRLOCK_QUEUE_WEIGHTS; default 1 each)")
    .option("--lease-timeout <duration>", "requeue a job after this long without a heartbeat (env AIRLOCK_LEASE_TIMEOUT; default 20s)")
    .option("--max-dequeue-wait <duration>", "longest a dequeue is held open (env AIRLOCK_MAX_DEQUEUE_WAIT; default 25s)")
    .option("--max-body-size <size>", "largest JSON request (env AIRLOCK_MAX_BODY_SIZE; default 8m)")
    .option("--max-log-chunk <size>", "largest log append request (env AIRLOCK_MAX_LOG_CHUNK; default 8m)")
    .option("--max-artifact-size <size>", "largest artifact (env AIRLOCK_MAX_ARTIFACT_SIZE; default 1g)")
    .option("--git-pack-cache-max <size>", "size cap of the cache of packs served to git fetches in <data>/pack-cache, least recently used evicted first; off: none (env AIRLOCK_GIT_PACK_CACHE_MAX; default 2g)")
    .option("--git-credential-helper <helper>", "git credential helper for pushing applied batch branches to origins (env AIRLOCK_GIT_CREDENTIAL_HELPER; default none)")
    .option("--sync-interval <duration>", "fetch every auto-indexed repository this often and index a new HEAD, e.g. 5m (env AIRLOCK_SYNC_INTERVAL; default off)")
    .option("--web-dir <dir>", "serve the web UI from this built directory (env AIRLOCK_WEB_DIR; default: the package's web/dist)")
    .addOption(new Option("--log-level <level>", "env AIRLOCK_LOG_LEVEL; default info").choices(["debug", "info", "warn", "error", "silent"]))
    .addOption(new Option("--log-format <format>", "env AIRLOCK_LOG_FORMAT; default text").choices(["text", "json"]))
    .option("--secrets-key-file <file>", "256-bit key (32 bytes raw, hex or base64; mode 0600) job secrets are encrypted with at rest (env AIRLOCK_SECRETS_KEY_FILE; default none: jobs with secrets are refused)")
    .option("--previous-secrets-key-file <files>", "keys of before a rotation, comma-separated: they still decrypt, never encrypt (env AIRLOCK_PREVIOUS_SECRETS_KEY_FILE)")
    .option("--allow-plaintext-secrets", "without --secrets-key-file, store job secrets unencrypted instead of refusing jobs that have any (env AIRLOCK_ALLOW_PLAINTEXT_SECRETS)");
/** Options of `install service` itself; the others given are the service's (src/cli/commands/service.ts). */
const serviceOptions = (command: Command, role: "server" | "executor"): Command =>
  command
    .option("--unit-dir <dir>", "where to write the unit (default /etc/systemd/system)")
    .option("--unit-name <name>", `unit and state directory name (default airlock-${role})`)
    .option("--dry-run", "print the unit instead of writing it")
    .option("--user <name>", "user the service runs as; create it first (default airlock)")
    .option("--env-file <file>", `KEY=value file for secrets (tokens, AIRLOCK_DATABASE_URL), read by systemd (default /etc/airlock/${role}.env)`)
    .option("--exec <path>", "the airlock launcher ExecStart runs (default: this package's bin/airlock)");
const serviceCommands = () => import("./commands/service.ts");

const server = serverOptions(program.command("server").description("run a coordinator: queue, repositories, logs, results, executor API"))
  .enablePositionalOptions()
  .action((flags: Record<string, unknown>) => run(async () => (await import("./commands/server.ts")).serverCommand(flags, io)));
server
  .command("rotate-secrets-key")
  .description("re-encrypt the stored job secrets with a new key (safe while coordinators run; see docs/security.md)")
  .option("--new-key-file <file>", "the key to encrypt with from now on")
  .option("--old-key-file <files>", "the key(s) they are encrypted with now, comma-separated (none needed for values stored unencrypted)")
  .option("--data <dir>", "the coordinator's data dir, for its SQLite file (env AIRLOCK_DATA; default ./.airlock)")
  .option("--database <url>", "the coordinators' postgres:// URL (env AIRLOCK_DATABASE_URL)")
  .action((flags: Record<string, unknown>) => run(async () => (await import("./commands/server.ts")).rotateSecretsKeyCommand(flags, io)));
server
  .command("backup")
  .description("copy a coordinator's SQLite store to FILE, consistently, while it runs (Postgres: pg_dump)")
  .requiredOption("--to <file>", "where the copy goes; never overwritten")
  .option("--data <dir>", "the coordinator's data dir (env AIRLOCK_DATA; default ./.airlock)")
  .option("--database <url>", "a Postgres store is named here only to be told to use pg_dump (env AIRLOCK_DATABASE_URL)")
  .action((flags: Record<string, unknown>) => run(async () => (await import("./commands/backup.ts")).backupCommand(flags, io)));
serviceOptions(serverOptions(server.command("install").description("install the coordinator as a service").command("service")), "server")
  .description("write a systemd unit running `airlock server` with the flags given (checked as the server would)")
  .action((_flags: unknown, command: Command) => run(async () => (await serviceCommands()).installServiceCommand("server", command, io)));

const executor = program.command("executor").description("run or check an executor");
const executorOptions = (command: Command): Command =>
  command
    .option("--url <urls>", "coordinator URL(s), comma-separated for failover (env AIRLOCK_URL; default http://127.0.0.1:7780)")
    .option("--token <token>", "executor token (env AIRLOCK_EXECUTOR_TOKEN; default: ./.airlock/executor-token)")
    .option("--token-file <file>", "file holding the executor token; the first line is used (env AIRLOCK_EXECUTOR_TOKEN_FILE)")
    .option("--ca <file>", "PEM file of a private CA for https (env AIRLOCK_CA)")
    .option("--queues <names>", "comma-separated queues to serve (env AIRLOCK_QUEUES; default default)")
    .option("--runtime <name>", "shell, bwrap, docker, gvisor, microvm, or auto (env AIRLOCK_RUNTIME; default auto)")
    .option("--max-jobs <n>", "jobs run at once (env AIRLOCK_MAX_JOBS; default 1)")
    .option("--warm-vms <n>", "pre-booted microVMs kept waiting for jobs, each used by one job (env AIRLOCK_WARM_VMS; default --max-jobs; 0: none)")
    .option("--warm-vm-max-age <duration>", "idle warm microVMs older than this are replaced (env AIRLOCK_WARM_VM_MAX_AGE; default 30m)")
    .option("--warm-vm-refill <how>", "restore (from a snapshot of a booted guest, made per executor) or boot (env AIRLOCK_WARM_VM_REFILL; default restore)")
    .option("--data <dir>", "executor data dir (env AIRLOCK_EXECUTOR_DATA; default ./.airlock-executor)")
    .option("--images <paths>", "OCI image layouts, OCI archives, or dirs holding layouts, comma-separated, for the bwrap and microvm runtimes (env AIRLOCK_IMAGES; default none)")
    .option("--workspace-root <dir>", "where job workspaces go (env AIRLOCK_WORKSPACE_ROOT; default <data>/workspaces)")
    .option("--max-runtime <duration>", "no job runs longer (env AIRLOCK_MAX_RUNTIME; default 30m)")
    .option("--heartbeat-interval <duration>", "env AIRLOCK_HEARTBEAT_INTERVAL; default 5s")
    .option("--repo-cache-max <size>", "size cap of the repository cache in <data>/repo-cache, least recently used evicted first; off: no cache (env AIRLOCK_REPO_CACHE_MAX; default 10g)")
    .option("--package-cache-max <size>", "size cap of the npm package cache in <data>/package-cache, lent to steps with cache: npm, tarballs kept only by verified SHA-512; off: none (env AIRLOCK_PACKAGE_CACHE_MAX; default 5g)")
    .option("--log-cap <size>", "per-job log cap; head and tail kept beyond it (env AIRLOCK_LOG_CAP; default 64m)")
    .option("--name <name>", "executor name (env AIRLOCK_EXECUTOR_NAME; default <hostname>-<random>)")
    .option("--docker-host <socket>", "Docker Engine socket for the docker and gvisor runtimes (env DOCKER_HOST; default unix:///var/run/docker.sock)")
    .option("--gvisor-runtime <name>", "name runsc is registered under in dockerd (env AIRLOCK_GVISOR_RUNTIME; default runsc)")
    .option("--default-image <image>", "image for steps that name none, docker and gvisor runtimes (env AIRLOCK_DEFAULT_IMAGE; default alpine:3)")
    .addOption(new Option("--network <mode>", "network given to jobs: internet (public addresses, through the egress gateway; takes every job) or none (takes only jobs with network: none) (env AIRLOCK_NETWORK; default internet)").choices(["internet", "none"]))
    .option("--egress-allow <rules>", "comma-separated CIDRs, addresses, hosts or host:port the gateway lets through although private, e.g. 10.1.2.3/32,mirror.internal:443 (env AIRLOCK_EGRESS_ALLOW)")
    .option("--egress-deny <rules>", "comma-separated CIDRs, addresses, hosts or host:port refused although public (env AIRLOCK_EGRESS_DENY)")
    .option("--egress-max-connections <n>", "gateway connections open at once per job (env AIRLOCK_EGRESS_MAX_CONNECTIONS; default 64)")
    .addOption(new Option("--log-level <level>", "env AIRLOCK_LOG_LEVEL; default info").choices(["debug", "info", "warn", "error", "silent"]))
    .addOption(new Option("--log-format <format>", "env AIRLOCK_LOG_FORMAT; default text").choices(["text", "json"]));
executorOptions(executor.command("run").description("pull jobs and run them"))
  .action((flags: Record<string, unknown>) => run(async () => (await executorCommands()).executorRunCommand(flags, io)));
executorOptions(executor.command("validate").description("check the coordinator URL, the token and each runtime"))
  .action((flags: Record<string, unknown>) => run(async () => (await executorCommands()).executorValidateCommand(flags, io)));

const runtimeHostOptions = (command: Command): Command =>
  command
    .option("--data <dir>", "executor data dir (env AIRLOCK_EXECUTOR_DATA; default ./.airlock-executor)")
    .option("--images <paths>", "OCI image layouts, OCI archives, or dirs holding layouts, comma-separated (env AIRLOCK_IMAGES; default none)")
    .option("--docker-host <socket>", "Docker Engine socket, for images only Docker has (env DOCKER_HOST; default unix:///var/run/docker.sock)")
    .option("--default-image <image>", "image for steps that name none (env AIRLOCK_DEFAULT_IMAGE; default alpine:3)")
    .addOption(new Option("--log-level <level>", "env AIRLOCK_LOG_LEVEL; default info").choices(["debug", "info", "warn", "error", "silent"]))
    .addOption(new Option("--log-format <format>", "env AIRLOCK_LOG_FORMAT; default text").choices(["text", "json"]));
const microvmCommands = () => import("./commands/microvm.ts");
const executorInstall = executor.command("install").description("build what a runtime needs (microvm), or install the executor as a service");
runtimeHostOptions(executorInstall.command("microvm").description("build the microVM guest kernel and initramfs into the data dir"))
  .option("--kernel <path>", "kernel image for the microVM guest (env AIRLOCK_MICROVM_KERNEL; default the newest /boot/vmlinuz-*)")
  .option("--force", "rebuild even when nothing changed")
  .action((flags: Record<string, unknown>) => run(async () => (await microvmCommands()).installCommand("microvm", flags, io)));
serviceOptions(executorOptions(executorInstall.command("service")), "executor")
  .description("write a systemd unit running `airlock executor run` with the flags given (checked as the executor would)")
  .action((_flags: unknown, command: Command) => run(async () => (await serviceCommands()).installServiceCommand("executor", command, io)));
runtimeHostOptions(executor.command("test-vm [command...]").description("boot a microVM, print its boot time and accelerator, run COMMAND (after --) or read commands from stdin"))
  .option("--image <image>", "image the command runs in (default: --default-image)")
  .action((command: string[], flags: Record<string, unknown>) => run(async () => (await microvmCommands()).testVmCommand(flags, command, io)));

withClientOptions(program.command("submit <file>").description("submit a job spec (YAML or JSON; - for stdin); prints the job id last"))
  .option("-f, --follow", "stream the logs; exit 0 if the job completed, 1 if it failed, 2 otherwise")
  .action((file: string, flags: ClientFlags & { follow?: boolean }) => withClient(flags, async (client) => (await jobsCommands()).submitCommand(client, file, Boolean(flags.follow), io)));

const jobs = program.command("jobs").description("list and inspect jobs");
withClientOptions(jobs.command("list").description("recent jobs, newest first"))
  .option("--state <state>")
  .option("--queue <queue>")
  .option("--repository <name>")
  .option("--limit <n>")
  .action((flags: ClientFlags & Record<string, string>) => withClient(flags, async (client) => (await jobsCommands()).listCommand(client, flags, io)));
withClientOptions(jobs.command("show <id>").description("a job's state, steps and artifacts"))
  .option("--json", "print the job as JSON")
  .action((id: string, flags: ClientFlags & { json?: boolean }) => withClient(flags, async (client) => (await jobsCommands()).showCommand(client, jobId(id), Boolean(flags.json), io)));
withClientOptions(jobs.command("logs <id>").description("a job's logs (terminal escapes other than colours shown as text)"))
  .option("-f, --follow", "stream until the job ends")
  .option("--raw", "print the logs as stored, escape sequences and all")
  .action((id: string, flags: ClientFlags & { follow?: boolean; raw?: boolean }) =>
    withClient(flags, async (client) => (await jobsCommands()).logsCommand(client, jobId(id), Boolean(flags.follow), io, Boolean(flags.raw))),
  );
withClientOptions(jobs.command("cancel <id>").description("cancel a queued or running job"))
  .action((id: string, flags: ClientFlags) => withClient(flags, async (client) => (await jobsCommands()).cancelCommand(client, jobId(id), io)));
withClientOptions(jobs.command("diff <id>").description("print the job's diff artifact (terminal escapes other than colours shown as text)"))
  .option("--raw", "print the diff as stored (`artifact <id> diff` does too)")
  .action((id: string, flags: ClientFlags & { raw?: boolean }) => withClient(flags, async (client) => (await jobsCommands()).artifactCommand(client, jobId(id), "diff", undefined, io, !flags.raw)));
withClientOptions(jobs.command("artifact <id> <name>").description("print (or save with -o) one of the job's artifacts"))
  .option("-o, --output <file>", "write to a file instead of stdout")
  .action((id: string, name: string, flags: ClientFlags & { output?: string }) => withClient(flags, async (client) => (await jobsCommands()).artifactCommand(client, jobId(id), name, flags.output, io)));

const repo = program.command("repo").description("repositories the coordinator serves");
withClientOptions(repo.command("add <name> <source>").description("mirror a git repository (a path or URL) under NAME"))
  .option("--auto-index", "index the default branch now and on each new HEAD (docs/indexing.md)")
  .option("--index-config <file>", "an index config the coordinator holds for it, overriding airlock-index.yaml and inference")
  .action((name: string, source: string, flags: ClientFlags & { autoIndex?: boolean; indexConfig?: string }) =>
    withClient(flags, async (client) => {
      const code = await (await admin()).repoAddCommand(client, name, source, io);
      await (await import("./commands/repo-index.ts")).applyPolicyFlags(client, name, flags, io);
      return code;
    }),
  );
withClientOptions(repo.command("list").description("registered repositories"))
  .action((flags: ClientFlags) => withClient(flags, async (client) => (await admin()).repoListCommand(client, io)));

registerBatchCommands(program, { io, withClientOptions, withClient, run });
registerIndexCommands(program, { io, withClientOptions, withClient });
registerRepoIndexCommands(repo, { io, withClientOptions, withClient });

withClientOptions(program.command("executors").description("executors seen by the coordinator"))
  .action((flags: ClientFlags) => withClient(flags, async (client) => (await admin()).executorsCommand(client, io)));
withClientOptions(program.command("queues").description("queue depths and waits"))
  .action((flags: ClientFlags) => withClient(flags, async (client) => (await admin()).queuesCommand(client, io)));

program
  .command("demo")
  .description("start a coordinator and an executor, run sample jobs, show their logs and diffs")
  .option("--once", "exit after the sample jobs: 0 only if each completed with the expected diff")
  .option("--data <dir>", "coordinator data dir (default: a new temporary dir)")
  .option("--listen <host:port>", "coordinator address (default 127.0.0.1:7780, or a free port when that is taken)")
  .option("--runtime <name>", "executor runtime (default auto: the strongest available)")
  .action((flags: Record<string, unknown>) => run(async () => (await import("./commands/demo.ts")).demoCommand(flags, io)));

// `--version` reads the build's commit, which not every command should pay for: it is the command.
const argv = process.argv.slice();
if (argv[2] === "--version" || argv[2] === "-V") argv.splice(2, 1, "version");
try {
  await program.parseAsync(argv);
} catch (error) {
  const failure = coerceError(error);
  process.stderr.write(`airlock: ${failure.message}\n`);
  exitCode = failure instanceof AirlockError && failure.code === "validation" ? 2 : 1;
}
process.exitCode = exitCode;
