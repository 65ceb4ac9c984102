/**
 * A real package manager through the egress gateway: `npm install` of a small package in a bwrap
 * sandbox, reaching the npm registry (the one outside service a test may use) only through the
 * gateway. Here the registry's name resolves to an address of a documentation range (a mirror
 * of this machine's), which the gateway refuses unless allowed, so the executor allows exactly
 * registry.npmjs.org:443, as an operator would allow a package mirror. Skipped, with the reason,
 * where the registry cannot be reached.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { EgressRecord } from "../../src/protocol/index.ts";
import { logText, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { bwrapUnavailable, TEST_IMAGES } from "../helpers/bwrap.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";

const REGISTRY = "registry.npmjs.org";

async function unavailable(): Promise<string | undefined> {
  if (!existsSync(join(TEST_IMAGES, "net", "oci", "index.json"))) return `the test image airlock-test/net is missing in ${TEST_IMAGES}`;
  const bwrap = await bwrapUnavailable();
  if (bwrap) return `bwrap: ${bwrap}`;
  try {
    const response = await fetch(`https://${REGISTRY}/is-number`, { method: "HEAD", signal: AbortSignal.timeout(10_000) });
    return response.ok ? undefined : `the npm registry answered ${response.status}`;
  } catch (error) {
    return `the npm registry cannot be reached from this machine (${(error as Error).message})`;
  }
}

const skip = await unavailable();
if (skip) process.stdout.write(`# SKIP npm through the egress gateway: ${skip}\n`);

describe("npm install through the egress gateway", { skip }, () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ runtime: "bwrap", executorArgs: ["--images", TEST_IMAGES, "--egress-allow", `${REGISTRY}:443`] });
  });

  after(async () => {
    await cluster?.close();
  });

  it("installs a package from the registry in a sandbox, and the record shows the registry and nothing else", async () => {
    const submitted = await cluster.api.submit({
      maxAttempts: 1,
      steps: [
        {
          image: "airlock-test/net",
          // The image's CA bundle is this machine's, which may hold a CA of its own mirror; Node
          // uses its built-in CAs unless told.
          env: { NODE_EXTRA_CA_CERTS: "/etc/ssl/certs/ca-certificates.crt" },
          commands: ["npm init -y >/dev/null", "npm install --no-audit --no-fund --loglevel=error is-number@7.0.0", `node -e "console.log('is-number says', require('is-number')(5))"`],
        },
      ],
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 180_000);
    const log = await logText(cluster.api, job, "step-1");
    assert.equal(job.state, "completed", `${job.failureMessage}\n${log}`);
    assert.match(log, /is-number says true/);
    const record = EgressRecord.parse(JSON.parse((await cluster.api.artifactBytes(job.id, "egress.json")).toString("utf8")));
    const connections = record.connections.filter((entry) => entry.protocol !== "dns");
    assert.ok(connections.some((entry) => entry.host === REGISTRY && entry.port === 443 && entry.verdict === "allowed" && entry.bytesIn > 1000));
    assert.ok(connections.every((entry) => entry.host === REGISTRY), `only the registry: ${connections.map((entry) => entry.host).join(", ")}`);
  });
});
