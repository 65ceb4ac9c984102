/**
 * The executor's npm package cache against a poisoning attempt, with real npm in bwrap through
 * the egress gateway: job A's `cache: npm` step writes other bytes under the digest of is-number
 * 7.0.0 (the tarball job B's lockfile names), a hash-consistent tarball of its own, and an index
 * entry pointing the package's name at it. The executor keeps none of that; job B's `npm ci` gets
 * the genuine package from the registry and the executor keeps it; job C's `npm ci` is served
 * from the cache (no connection leaves its sandbox). Skipped, with the reason, without the net
 * image, bwrap or the npm registry.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { EgressRecord, type JobView } from "../../src/protocol/index.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { TEST_IMAGES } from "../helpers/bwrap.ts";
import { logText, makeRepo, startCluster, tempDir, waitForJob, type Cluster } from "../helpers/cluster.ts";

const REGISTRY = "registry.npmjs.org";
const INTEGRITY = "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==";
const DIGEST = Buffer.from(INTEGRITY.slice("sha512-".length), "base64").toString("hex");

async function unavailable(): Promise<string | undefined> {
  if (!existsSync(join(TEST_IMAGES, "net", "oci", "index.json"))) return `the test image airlock-test/net is missing in ${TEST_IMAGES} (scripts/test-images.sh builds it)`;
  const probe = await new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(tmpdir(), "airlock-cache-probe"), images: [TEST_IMAGES], logger: silentLogger }).probe();
  if (!probe.usable) return `bwrap: ${probe.detail}`;
  try {
    const response = await fetch(`https://${REGISTRY}/is-number/-/is-number-7.0.0.tgz`, { method: "HEAD", signal: AbortSignal.timeout(10_000) });
    return response.ok ? undefined : `the npm registry answered ${response.status}`;
  } catch (error) {
    return `the npm registry cannot be reached from this machine (${(error as Error).message})`;
  }
}

const skip = await unavailable();
if (skip) process.stdout.write(`# SKIP package cache poisoning: ${skip}\n`);

/** Job A's step: plants under the victim's digest, and a self-consistent tarball with an index entry naming it. */
const PLANT = `
const fs = require("fs"), path = require("path"), crypto = require("crypto");
const content = path.join(process.env.npm_config_cache, "_cacache", "content-v2", "sha512");
const put = (hex, data) => { const p = path.join(content, hex.slice(0, 2), hex.slice(2, 4), hex.slice(4)); fs.mkdirSync(path.dirname(p), { recursive: true }); fs.writeFileSync(p, data); };
put("${DIGEST}", "module.exports = () => { require('fs').writeFileSync('/tmp/pwned', 'x'); };");
const evil = Buffer.from("a tarball of the attacker's choosing");
const evilHex = crypto.createHash("sha512").update(evil).digest("hex");
put(evilHex, evil);
const index = path.join(process.env.npm_config_cache, "_cacache", "index-v5", "00", "11");
fs.mkdirSync(index, { recursive: true });
fs.writeFileSync(path.join(index, "entry"), JSON.stringify({ key: "make-fetch-happen:request-cache:https://${REGISTRY}/is-number/-/is-number-7.0.0.tgz", integrity: "sha512-" + Buffer.from(evilHex, "hex").toString("base64") }));
console.log("planted " + evilHex);
`;

describe("npm package cache: a job cannot plant what another job installs", { skip }, () => {
  let cluster: Cluster;
  let work: string;

  before(async () => {
    cluster = await startCluster({ runtime: "bwrap", executorArgs: ["--images", TEST_IMAGES, "--egress-allow", `${REGISTRY}:443`] });
    work = await tempDir("airlock-package-cache-e2e-");
    const manifest = { name: "uses-is-number", version: "1.0.0", dependencies: { "is-number": "7.0.0" } };
    const lock = {
      name: manifest.name,
      version: manifest.version,
      lockfileVersion: 3,
      requires: true,
      packages: {
        "": manifest,
        "node_modules/is-number": { version: "7.0.0", resolved: `https://${REGISTRY}/is-number/-/is-number-7.0.0.tgz`, integrity: INTEGRITY, license: "MIT", engines: { node: ">=0.12.0" } },
      },
    };
    await makeRepo(join(work, "uses"), { "package.json": JSON.stringify(manifest, null, 2), "package-lock.json": JSON.stringify(lock, null, 2), "plant.js": PLANT });
    await cluster.api.addRepository("oss/uses", join(work, "uses"));
  });

  after(async () => {
    await cluster?.close();
  });

  const run = async (key: string, commands: string[]): Promise<{ job: JobView; log: string }> => {
    const submitted = await cluster.api.submit({
      repository: "oss/uses",
      maxAttempts: 1,
      steps: [{ key, cache: "npm", image: "airlock-test/net", commands, env: { NODE_EXTRA_CA_CERTS: "/etc/ssl/certs/ca-certificates.crt" } }],
    });
    const job = await waitForJob(cluster.api, submitted.id, undefined, 180_000);
    return { job, log: await logText(cluster.api, job, key) };
  };
  const kept = (): string => join(cluster.dir, "executor-1", "package-cache", "npm", "content-v2", "sha512");
  const egress = async (job: JobView) => EgressRecord.parse(JSON.parse((await cluster.api.artifactBytes(job.id, "egress.json")).toString("utf8")));

  it("refuses job A's planted files; job B installs the genuine package and the cache keeps it; job C is served from the cache", async () => {
    const a = await run("plant", ["node plant.js"]);
    assert.equal(a.job.state, "completed", a.log);
    assert.match(a.log, /npm cache: 0 verified tarball\(s\) lent/);
    const planted = a.log.match(/planted ([0-9a-f]{128})/)?.[1];
    assert.ok(planted, a.log);
    assert.match(a.log, /kept 1 new tarball\(s\) .*refused 1 whose bytes do not match their name/, "the self-consistent file is kept (it can only ever be served for its own digest), the planted one refused");
    assert.ok(!existsSync(join(kept(), DIGEST.slice(0, 2), DIGEST.slice(2, 4), DIGEST.slice(4))), "nothing is kept under is-number's digest");
    assert.deepEqual(await readdir(join(cluster.dir, "executor-1", "package-cache", "npm")), ["content-v2"], "no index entries are kept");

    const b = await run("install", ["npm ci --no-audit --no-fund", "node -e 'console.log(\"is-number says \" + require(\"is-number\")(5))'", "test ! -e /tmp/pwned"]);
    assert.equal(b.job.state, "completed", b.log);
    assert.match(b.log, /is-number says true/, "the genuine package, not the planted module");
    assert.match(b.log, /kept 1 new tarball\(s\)/);
    assert.ok((await egress(b.job)).connections.some((entry) => entry.host === REGISTRY && entry.verdict === "allowed"), "job B fetched the tarball from the registry");
    const genuine = await readFile(join(kept(), DIGEST.slice(0, 2), DIGEST.slice(2, 4), DIGEST.slice(4)));
    assert.equal(createHash("sha512").update(genuine).digest("hex"), DIGEST, "the cache holds is-number's tarball under its digest");

    const c = await run("install", ["npm ci --no-audit --no-fund", "node -e 'console.log(\"is-number says \" + require(\"is-number\")(5))'"]);
    assert.equal(c.job.state, "completed", c.log);
    assert.match(c.log, /npm cache: 2 verified tarball\(s\) lent/);
    assert.match(c.log, /is-number says true/);
    const out = (await egress(c.job)).connections.filter((entry) => entry.verdict === "allowed" && entry.protocol !== "dns");
    assert.deepEqual(out, [], "job C's install came from the cache: nothing left the sandbox");
  });
});
