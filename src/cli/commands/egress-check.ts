/**
 * `executor validate`'s egress check: the rules parse, the forwarder builds and runs in a fresh
 * network namespace, and a gateway started here answers on its socket: it fetches from a server
 * of this process on loopback (allowed for the check only) and refuses a private address (refused
 * before any packet is sent). Nothing leaves this machine.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../../common/logger.ts";
import { buildPolicy, EgressGateway, ensureForwarder, parseEgressRule } from "../../egress/index.ts";
import type { ExecutorConfig } from "../../executor/config.ts";
import { coerceError } from "../../protocol/index.ts";

export interface EgressCheck {
  ok: boolean;
  detail: string;
}

/** Status and body of one proxied GET sent to the gateway's socket. */
function proxiedGet(socketPath: string, url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      createConnection: () => {
        const socket = connect(socketPath);
        socket.write("H");
        return socket;
      },
      path: url,
      headers: { connection: "close" },
      timeout: 5000,
    });
    req.on("response", (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("the gateway did not answer within 5 s")));
    req.on("error", reject);
    req.end();
  });
}

function runs(argv: string[]): Promise<{ ok: boolean; why: string }> {
  return new Promise((resolve) => {
    const child = spawn(argv[0] ?? "", argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    child.on("error", (error) => resolve({ ok: false, why: error.message }));
    child.on("close", (code) => resolve({ ok: code === 0, why: stderr.trim() || `exit ${code}` }));
  });
}

export async function checkEgress(config: Readonly<ExecutorConfig>, logger: Logger): Promise<EgressCheck> {
  if (config.network === "none") return { ok: true, detail: "none: this executor takes only jobs with network: none" };
  try {
    for (const rule of [...config.egressAllow, ...config.egressDeny]) parseEgressRule(rule);
  } catch (error) {
    return { ok: false, detail: coerceError(error).message };
  }
  let forwarder: string;
  try {
    forwarder = await ensureForwarder(config.dataDir, logger);
  } catch (error) {
    return { ok: false, detail: `the egress forwarder cannot be built: ${coerceError(error).message}; run with --network none to give jobs no network` };
  }
  const dir = await mkdtemp(join(tmpdir(), "airlock-egress-check-"));
  let server: Server | undefined;
  let gateway: EgressGateway | undefined;
  try {
    server = createServer((_request, response) => response.end("airlock egress check\n"));
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const socketPath = join(dir, "gateway.sock");
    gateway = await EgressGateway.start({ socketPath, policy: buildPolicy({ allow: [`127.0.0.1:${port}`], deny: [], ownAddresses: [] }), maxConnections: 4, logger });
    const allowed = await proxiedGet(socketPath, `http://127.0.0.1:${port}/`);
    if (allowed.status !== 200 || !allowed.body.includes("airlock egress check")) return { ok: false, detail: `the gateway did not relay a request (HTTP ${allowed.status}: ${allowed.body.slice(0, 200)})` };
    const refused = await proxiedGet(socketPath, "http://10.0.0.1/");
    if (refused.status !== 403) return { ok: false, detail: `the gateway did not refuse a private address (HTTP ${refused.status})` };
    // In a user and network namespace of its own, so its ports are not the host's.
    const inNamespace = await runs(["unshare", "--user", "--map-root-user", "--net", forwarder, "--unix", socketPath, "--", "/bin/true"]);
    const forwarderNote = inNamespace.ok ? "runs in a fresh network namespace" : `could not be tried in a fresh network namespace (${inNamespace.why})`;
    return {
      ok: true,
      detail:
        `internet through the egress gateway: it relays and refuses as it should; forwarder ${forwarder} ${forwarderNote}; ` +
        `${config.egressAllow.length} allow and ${config.egressDeny.length} deny rule(s); up to ${config.egressMaxConnections} connections per job`,
    };
  } catch (error) {
    return { ok: false, detail: `the egress gateway does not work here: ${coerceError(error).message}` };
  } finally {
    await gateway?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    await rm(dir, { recursive: true, force: true });
  }
}
