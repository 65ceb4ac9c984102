/**
 * Indexing real code: immer's published TypeScript sources (fetched with `npm pack`, committed
 * into a throwaway repository) indexed by scip-typescript in the airlock-test/node-indexer image
 * in bwrap, through `airlock index`; the index is parsed and checked (its files are documents, a
 * class defined in one file is referenced from another). Bad input: a repository with nothing to
 * index, and an indexer that crashes. Skipped, with the reason, without the image, bwrap or the
 * npm registry.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { run, runChecked } from "../../src/common/exec.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { countScip, DEFINITION_ROLE, readScip } from "../../src/indexing/index.ts";
import { EgressRecord } from "../../src/protocol/index.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { DockerClient } from "../../src/runtimes/docker/client.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { dockerUnavailable, SOCKET } from "../runtimes/docker-target.ts";
import { TEST_IMAGES } from "../helpers/bwrap.ts";
import { publishedSources } from "../helpers/npm-package.ts";
import { baseEnv, ENTRY, logText, makeRepo, startCluster, tempDir, waitForIndex, waitForJob, type Cluster } from "../helpers/cluster.ts";

const REGISTRY = "registry.npmjs.org";

async function unavailable(): Promise<string | undefined> {
  if (!existsSync(join(TEST_IMAGES, "node-indexer", "oci", "index.json"))) return `the test image airlock-test/node-indexer is missing in ${TEST_IMAGES} (scripts/test-images.sh builds it)`;
  const probe = await new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(tmpdir(), "airlock-index-probe"), images: [TEST_IMAGES], logger: silentLogger }).probe();
  if (!probe.usable) return `bwrap: ${probe.detail}`;
  try {
    const response = await fetch(`https://${REGISTRY}/immer`, { method: "HEAD", signal: AbortSignal.timeout(10_000) });
    return response.ok ? undefined : `the npm registry answered ${response.status}`;
  } catch (error) {
    return `the npm registry cannot be reached from this machine (${(error as Error).message})`;
  }
}

async function dockerMissing(): Promise<string | undefined> {
  const missing = await dockerUnavailable(new DockerRuntime({ host: SOCKET, logger: silentLogger }));
  if (missing) return missing;
  const client = new DockerClient({ socketPath: SOCKET });
  try {
    return (await client.imageExists("airlock-test/node-indexer")) ? undefined : "test image airlock-test/node-indexer is missing in Docker (scripts/test-images.sh imports it)";
  } finally {
    await client.close();
  }
}

const skip = await unavailable();
if (skip) process.stdout.write(`# SKIP indexing with scip-typescript: ${skip}\n`);
const dockerSkip = skip ?? (await dockerMissing());
if (dockerSkip && !skip) process.stdout.write(`# SKIP indexing with scip-typescript in docker: ${dockerSkip}\n`);

function indexingSuite(runtime: "bwrap" | "docker", reason: string | undefined, runtimeArgs: string[], badInput: boolean): void {
describe(`indexing with scip-typescript in ${runtime}`, { skip: reason }, () => {
  let cluster: Cluster;
  let work: string;

  before(async () => {
    cluster = await startCluster({ runtime, executorArgs: [...runtimeArgs, "--egress-allow", `${REGISTRY}:443`] });
    work = await tempDir("airlock-indexing-");
  });

  after(async () => {
    await cluster?.close();
  });

  it("indexes immer's TypeScript sources: its files are documents, and a class defined in one file is referenced from another", async () => {
    const files = await publishedSources(join(work, "pack"));
    assert.ok(files["src/immer.ts"] && files["src/core/immerClass.ts"], "the package ships its sources");
    await makeRepo(join(work, "immer"), files);
    await cluster.api.addRepository("oss/immer", join(work, "immer"));

    const dry = await cluster.api.index({ repository: "oss/immer", dryRun: true });
    assert.deepEqual(dry.entries.map((entry) => [entry.root, entry.action, entry.indexer]), [[".", "dry-run", "scip-typescript"]]);
    assert.deepEqual(await cluster.api.listIndexes({ repository: "oss/immer" }), [], "a dry run queues nothing");

    const plan = await cluster.api.index({ repository: "oss/immer" });
    const [entry] = plan.entries;
    assert.equal(entry?.action, "queued");
    const job = await waitForJob(cluster.api, entry.index!.jobId, undefined, 300_000);
    const log = (await logText(cluster.api, job, "install")) + (await logText(cluster.api, job, "index"));
    assert.equal(job.state, "completed", `${job.failureMessage}\n${log}`);
    const index = await waitForIndex(cluster.api, entry.index!.id);
    assert.equal(index.state, "completed", index.failureMessage ?? "");
    assert.equal(index.commit, plan.commit);

    const bytes = Buffer.concat(await Array.fromAsync(await cluster.api.indexFile(index.id), (chunk) => Buffer.from(chunk)));
    assert.equal(bytes.length, index.size);
    const scip = readScip(bytes);
    assert.equal(scip.tool.name, "scip-typescript");
    assert.equal(scip.tool.version, "0.4.0");
    const paths = scip.documents.map((document) => document.path);
    const sources = Object.keys(files).filter((path) => path.endsWith(".ts"));
    assert.deepEqual([...paths].sort(), sources.sort(), "every source file is a document, and nothing else");
    const defined = scip.documents.find((document) => document.path === "src/core/immerClass.ts")!.occurrences.find((occurrence) => occurrence.symbol.endsWith("/Immer#") && (occurrence.roles & DEFINITION_ROLE) !== 0);
    assert.ok(defined, "src/core/immerClass.ts defines the class Immer");
    const references = scip.documents.filter((document) => document.path !== "src/core/immerClass.ts" && document.occurrences.some((occurrence) => occurrence.symbol === defined.symbol && (occurrence.roles & DEFINITION_ROLE) === 0));
    assert.ok(references.some((document) => document.path === "src/immer.ts"), `src/immer.ts references ${defined.symbol}; found in ${references.map((document) => document.path).join(", ")}`);
    const counts = countScip(scip);
    assert.deepEqual({ documents: index.documents, symbols: index.symbols, occurrences: index.occurrences }, counts);
    assert.ok(counts.symbols > 100 && counts.occurrences > counts.symbols);

    // The CLI shows the same counts, downloads the same bytes, and lists it.
    const cli = async (...args: string[]): Promise<string> =>
      (await runChecked(process.execPath, [ENTRY, ...args, "--url", cluster.coordinator.url, "--token", cluster.coordinator.apiToken], { env: baseEnv })).stdout.toString();
    assert.match(await cli("index", "show", String(index.id)), new RegExp(`documents ${counts.documents}, symbols ${counts.symbols}, occurrences ${counts.occurrences}`));
    await cli("index", "download", String(index.id), "-o", join(work, "out.scip"));
    assert.deepEqual(await readFile(join(work, "out.scip")), bytes);
    assert.match(await cli("index", "list", "--repo", "oss/immer"), new RegExp(`^${index.id}\\s+oss/immer\\s+${plan.commit.slice(0, 12)}\\s+\\.\\s+scip-typescript@0\\.4\\.0\\s+completed\\s+${counts.documents}\\s`, "m"));

    // The same commit again: the index exists, nothing is queued.
    const again = await cluster.api.index({ repository: "oss/immer" });
    assert.deepEqual(again.entries.map((item) => [item.action, item.index?.id]), [["existing", index.id]]);
  });

  if (!badInput) return;

  it("says there is nothing to index in a repository without a project, and why", async () => {
    await makeRepo(join(work, "docs"), { "README.md": "# only docs\n", "lib/package.json": "{}" });
    await cluster.api.addRepository("oss/docs", join(work, "docs"));
    await assert.rejects(cluster.api.index({ repository: "oss/docs" }), /nothing to index in oss\/docs at [0-9a-f]{12}: none of its package\.json files \(lib\/package\.json\) has a tsconfig\.json or jsconfig\.json/);
    const result = await run(process.execPath, [ENTRY, "index", "oss/docs", "--url", cluster.coordinator.url, "--token", cluster.coordinator.apiToken], { env: baseEnv });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /airlock: nothing to index in oss\/docs/);
    assert.deepEqual(await cluster.api.listIndexes({ repository: "oss/docs" }), []);
  });

  it("still indexes a project whose postinstall misbehaves, and its host read, private connection and outside write all fail", async () => {
    const token = join(cluster.dir, "coordinator", "api-token");
    const planted = join(cluster.dir, "planted-by-postinstall");
    assert.ok(existsSync(token), `the coordinator's token is at ${token}`);
    const evil = [
      'const fs = require("fs");',
      'const [token, planted, coordinator] = process.argv.slice(2);',
      'try { fs.readFileSync(token); console.log("EVIL read: yes"); } catch (e) { console.log("EVIL read: no " + e.code); }',
      'try { fs.writeFileSync(planted, "x"); console.log("EVIL write: yes"); } catch (e) { console.log("EVIL write: no " + e.code); }',
      'const probe = (name, url) => fetch(url, { signal: AbortSignal.timeout(10000) }).then((r) => console.log(`EVIL ${name}: status ${r.status} ${r.headers.get("x-airlock-egress")}`), (e) => console.log(`EVIL ${name}: failed ${e.cause?.code ?? ""} ${e.cause?.message ?? e.message}`));',
      'probe("private", "http://10.9.0.5/").then(() => probe("coordinator", coordinator));',
    ].join("\n");
    await makeRepo(join(work, "evil"), {
      "package.json": JSON.stringify({ name: "evil", version: "1.0.0", scripts: { postinstall: `node evil.js ${token} ${planted} ${cluster.coordinator.url}/api/repositories` } }),
      "evil.js": evil,
      "tsconfig.json": JSON.stringify({ include: ["src"] }),
      "src/a.ts": "export function greet(name: string): string {\n  return `hi ${name}`;\n}\n",
      "src/b.ts": 'import { greet } from "./a";\nexport const hello = greet("b");\n',
    });
    await cluster.api.addRepository("oss/evil", join(work, "evil"));
    const plan = await cluster.api.index({ repository: "oss/evil" });
    const job = await waitForJob(cluster.api, plan.entries[0]!.index!.jobId, undefined, 180_000);
    const install = await logText(cluster.api, job, "install");
    assert.equal(job.state, "completed", `${job.failureMessage}\n${install}`);
    assert.match(install, /EVIL read: no ENOENT/);
    assert.match(install, /EVIL write: no (ENOENT|EROFS|EACCES)/);
    assert.match(install, /EVIL private: (status 403 refused|failed)/);
    assert.match(install, /EVIL coordinator: (status 403 refused|failed ECONNREFUSED)/);
    assert.ok(!existsSync(planted), "nothing was written on the host");
    const record = EgressRecord.parse(JSON.parse((await cluster.api.artifactBytes(job.id, "egress.json")).toString("utf8")));
    assert.ok(record.connections.some((entry) => entry.host === "10.9.0.5" && entry.verdict === "refused"), "the gateway refused the private address");
    assert.ok(!record.connections.some((entry) => entry.verdict === "allowed" && entry.protocol !== "dns"), "nothing went out");
    const index = await waitForIndex(cluster.api, plan.entries[0]!.index!.id);
    assert.equal(index.state, "completed", index.failureMessage ?? "");
    const scip = readScip(Buffer.concat(await Array.fromAsync(await cluster.api.indexFile(index.id), (chunk) => Buffer.from(chunk))));
    assert.deepEqual(scip.documents.map((document) => document.path).sort(), ["src/a.ts", "src/b.ts"]);
    const greet = scip.documents.find((document) => document.path === "src/a.ts")!.occurrences.find((occurrence) => occurrence.symbol.endsWith("/greet().") && (occurrence.roles & DEFINITION_ROLE) !== 0);
    assert.ok(greet && scip.documents.find((document) => document.path === "src/b.ts")!.occurrences.some((occurrence) => occurrence.symbol === greet.symbol));
  });

  it("fails the index of an indexer that crashes, with the job's log, and registers no file", async () => {
    await makeRepo(join(work, "crash"), {
      "package.json": "{}",
      "tsconfig.json": "{}",
      "src/a.ts": "export const a = 1;\n",
      "airlock-index.yaml": "roots:\n  - path: .\n    install: []\n    index: \"echo 'indexer: out of memory' >&2; exit 3\"\n",
    });
    await cluster.api.addRepository("oss/crash", join(work, "crash"));
    const plan = await cluster.api.index({ repository: "oss/crash" });
    assert.equal(plan.entries[0]?.source, "override");
    const job = await waitForJob(cluster.api, plan.entries[0].index!.jobId, undefined, 120_000);
    assert.equal(job.state, "failed");
    assert.match(await logText(cluster.api, job, "index"), /indexer: out of memory/);
    const index = await waitForIndex(cluster.api, plan.entries[0].index!.id);
    assert.equal(index.state, "failed");
    assert.match(index.failureMessage ?? "", new RegExp(`^job ${job.id} failed`));
    assert.equal(index.documents, null);
    await assert.rejects(cluster.api.indexFile(index.id), /index \d+ is failed .*there is no file to download/);
  });
});
}

indexingSuite("bwrap", skip, ["--images", TEST_IMAGES], true);
indexingSuite("docker", dockerSkip, ["--docker-host", SOCKET], false);
