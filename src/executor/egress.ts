/**
 * Network for jobs, executor side: one EgressHost per executor (the forwarder binary, the
 * executor's and coordinator's own addresses, the operator's rules), and one JobEgress per job
 * that asked for `network: internet`: a gateway on a unix socket in the job's directory, the
 * socket and forwarder handed to the runtime, proxy variables for each step, a summary of each
 * step's connections in its log, and the record uploaded as the artifact `egress.json`.
 *
 * States of a JobEgress: OPEN (gateway listening) -> CLOSED (gateway closed, record final).
 * `close` is idempotent; the record can be read in either state.
 */
import { lookup } from "node:dns/promises";
import { mkdir, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import type { Logger } from "../common/logger.ts";
import { buildPolicy, EgressGateway, ensureForwarder, parseEgressRule } from "../egress/index.ts";
import { EGRESS_ARTIFACT, formatSize, StepFailedError, ValidationError, type EgressConnection, type EgressRecord, type JobPayload, type JobSpec } from "../protocol/index.ts";
import { RESOLV_CONF, SANDBOX_PROXY, type Runtime, type SandboxNetwork } from "../runtimes/index.ts";
import { persist } from "./attempt-end.ts";
import type { JobClient } from "./client.ts";
import type { ExecutorConfig } from "./config.ts";
import type { EntryStream } from "./log-shipper.ts";

export { EGRESS_ARTIFACT };

/** Runtimes that run steps as host processes: they have the host's network, and no gateway. */
const HOST_NETWORK_RUNTIMES = new Set(["shell"]);

/** What every step with a network gets, so common tools use the gateway unchanged. */
export function proxyEnvironment(): Record<string, string> {
  const noProxy = "localhost,127.0.0.1,::1";
  return {
    HTTP_PROXY: SANDBOX_PROXY.http,
    HTTPS_PROXY: SANDBOX_PROXY.http,
    http_proxy: SANDBOX_PROXY.http,
    https_proxy: SANDBOX_PROXY.http,
    ALL_PROXY: SANDBOX_PROXY.socks,
    all_proxy: SANDBOX_PROXY.socks,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    // Node's fetch and http honour the variables above only when asked to (Node >= 24).
    NODE_USE_ENV_PROXY: "1",
    npm_config_proxy: SANDBOX_PROXY.http,
    npm_config_https_proxy: SANDBOX_PROXY.http,
  };
}

export class EgressHost {
  readonly forwarder: string;
  private readonly config: Readonly<ExecutorConfig>;
  private readonly ownAddresses: string[];

  private constructor(config: Readonly<ExecutorConfig>, forwarder: string, ownAddresses: string[]) {
    this.config = config;
    this.forwarder = forwarder;
    this.ownAddresses = ownAddresses;
  }

  /** Undefined when the executor gives no network, or its runtime has the host's own. */
  static async create(config: Readonly<ExecutorConfig>, runtime: Runtime, logger: Logger): Promise<EgressHost | undefined> {
    if (config.network === "none" || HOST_NETWORK_RUNTIMES.has(runtime.name)) return undefined;
    // Read every rule now: a typo stops the executor at start, not a job later.
    for (const rule of [...config.egressAllow, ...config.egressDeny]) parseEgressRule(rule);
    const forwarder = await ensureForwarder(config.dataDir, logger);
    return new EgressHost(config, forwarder, await ownAddresses(config.urls));
  }

  /** A gateway for one job, listening in `dir` (made here; removed with the job's directory). */
  async open(job: { id: number; attempt: number; spec: JobSpec }, dir: string, logger: Logger, onEvent: (line: string) => void): Promise<JobEgress> {
    const jobAllow = job.spec.network.allow;
    let policy;
    try {
      policy = buildPolicy({ allow: this.config.egressAllow, deny: this.config.egressDeny, ownAddresses: this.ownAddresses, ...(jobAllow ? { jobAllow } : {}) });
    } catch (error) {
      throw new ValidationError(`network.allow: ${(error as Error).message}`, { field: "network.allow" });
    }
    await mkdir(dir, { recursive: true, mode: 0o711 });
    await writeFile(join(dir, RESOLV_CONF), `nameserver ${SANDBOX_PROXY.dns}\n`, { mode: 0o644 });
    const socketPath = join(dir, "gateway.sock");
    const gateway = await EgressGateway.start({
      socketPath,
      policy,
      maxConnections: Math.min(job.spec.resources.connections ?? this.config.egressMaxConnections, this.config.egressMaxConnections),
      ...(job.spec.resources.egressBytes !== undefined ? { maxBytes: job.spec.resources.egressBytes } : {}),
      logger: logger.child({ scope: "egress" }),
      onEvent: (entry) => onEvent(describeEvent(entry)),
    });
    return new JobEgress(gateway, { gatewaySocket: socketPath, forwarder: this.forwarder });
  }
}

export class JobEgress {
  readonly network: SandboxNetwork;
  private readonly gateway: EgressGateway;
  private seen = 0;

  constructor(gateway: EgressGateway, network: SandboxNetwork) {
    this.gateway = gateway;
    this.network = network;
  }

  record(): EgressRecord {
    return this.gateway.record();
  }

  /** One line on what the step just ended did through the gateway (undefined: nothing). */
  stepSummary(): string | undefined {
    const record = this.gateway.record();
    const entries = record.connections.slice(this.seen);
    this.seen = record.connections.length;
    const fresh = entries.filter((entry) => entry.protocol !== "dns");
    const lookups = entries.length - fresh.length;
    if (entries.length === 0) return undefined;
    const refused = fresh.filter((connection) => connection.verdict === "refused");
    const bytes = fresh.reduce((sum, connection) => sum + connection.bytesIn + connection.bytesOut, 0);
    const hosts = [...new Set(fresh.filter((connection) => connection.verdict === "allowed").map((connection) => `${connection.host}:${connection.port}`))];
    const shown = hosts.slice(0, 5).join(", ") + (hosts.length > 5 ? `, and ${hosts.length - 5} more` : "");
    return (
      `egress: ${fresh.length} connection(s), ${fresh.length - refused.length} allowed${shown ? ` (${shown})` : ""}, ${refused.length} refused, ${formatSize(bytes)} transferred` +
      (lookups > 0 ? `; ${lookups} DNS lookup(s)` : "") +
      (record.limitHit ? `; ${record.limitHit}` : "")
    );
  }

  async close(): Promise<void> {
    await this.gateway.close();
  }
}

function describeEvent(entry: EgressConnection | string): string {
  if (typeof entry === "string") return `egress: ${entry}`;
  const target = entry.address && entry.address !== entry.host ? `${entry.host}:${entry.port} (${entry.address})` : `${entry.host}:${entry.port}`;
  return `egress refused ${entry.protocol} ${target}: ${entry.reason ?? entry.rule ?? "refused"}`;
}

/** The executor's interface addresses and the coordinator's, which no job may reach unless allowed. */
async function ownAddresses(urls: string[]): Promise<string[]> {
  const addresses = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const item of list ?? []) addresses.add(item.address.replace(/%.*$/, ""));
  for (const url of urls) {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
    if (isIP(host)) {
      addresses.add(host);
      continue;
    }
    const found = await lookup(host, { all: true }).catch(() => []);
    for (const item of found) addresses.add(item.address);
  }
  return [...addresses];
}

/**
 * The job's gateway, when it asked for the internet and the executor gives it; a runtime with
 * the host's network (shell) gets none and says so in the job's prepare log.
 */
export async function openJobEgress(
  job: JobPayload,
  deps: { config: Readonly<ExecutorConfig>; runtime: Runtime; egress?: EgressHost | undefined },
  netDir: string,
  log: EntryStream,
  logger: Logger,
  onRefusal: (line: string) => void,
): Promise<JobEgress | undefined> {
  const { config, runtime, egress } = deps;
  if (job.spec.network.mode === "none") return undefined;
  if (config.network === "none") throw new StepFailedError("prepare", undefined, "the job asks for network: internet, but this executor gives jobs no network (--network none)");
  if (!egress) {
    log.write(`network: runtime ${runtime.name} runs steps as host processes, with the host's network (trusted jobs only; no egress gateway)\n`);
    return undefined;
  }
  let opened: JobEgress;
  try {
    opened = await egress.open(job, netDir, logger, onRefusal);
  } catch (error) {
    // A job allow entry the policy cannot read is the spec's fault: fail, do not retry.
    if (error instanceof ValidationError) throw new StepFailedError("prepare", undefined, error.message);
    throw error;
  }
  const allow = job.spec.network.allow;
  log.write(`network: internet through the egress gateway${allow ? ` (only ${allow.join(", ")})` : ""}; proxy ${SANDBOX_PROXY.http}\n`);
  return opened;
}

/** Closes the gateway and, unless told not to (a lost lease), keeps its record as the artifact egress.json. */
export async function closeJobEgress(egress: JobEgress, client: JobClient, logger: Logger, keepRecord: boolean): Promise<void> {
  await egress.close().catch((error: unknown) => logger.warn("egress gateway close failed", { error: String(error) }));
  if (!keepRecord) return;
  const body = Buffer.from(JSON.stringify(egress.record(), null, 2));
  await persist(() => client.uploadArtifact(EGRESS_ARTIFACT, (async function* () { yield body; })()), logger, "egress record upload").catch((error: unknown) =>
    logger.warn("egress record not uploaded", { error: String(error) }),
  );
}
