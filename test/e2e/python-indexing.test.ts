/**
 * Indexing real Python code: toml 0.10.2 (downloaded by the host's pip at setup, committed into a
 * throwaway repository) indexed by scip-python in the airlock-test/python-indexer image, in bwrap
 * and docker. The repository is added with `repo add --auto-index`, which indexes its HEAD; the
 * index is parsed with the SCIP schema (its modules are documents, a class defined in one module
 * is referenced from another); `repo sync` after a new commit indexes the new HEAD.
 *
 * The install step is the inferred one (`pip3 install --user` of the project, through the egress
 * gateway) when PyPI answers; otherwise (say, a machine that reaches only a mirror) the
 * repository gets a coordinator-held index config that installs it offline, and the test says so.
 * Skipped, with the reason, without the image, the sandbox or the package.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runChecked } from "../../src/common/exec.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { countScip, DEFINITION_ROLE, PYTHON_COPY, readScip, SCIP_PYTHON } from "../../src/indexing/index.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { DockerClient } from "../../src/runtimes/docker/client.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { dockerUnavailable, SOCKET } from "../runtimes/docker-target.ts";
import { TEST_IMAGES } from "../helpers/bwrap.ts";
import { PYTHON_PACKAGE, pythonSources } from "../helpers/pypi-package.ts";
import { baseEnv, commitFile, ENTRY, logText, makeRepo, startCluster, tempDir, waitForIndex, waitForJob, type Cluster } from "../helpers/cluster.ts";

const work = await tempDir("airlock-python-indexing-");
const IMAGE = SCIP_PYTHON.image;

async function unavailable(): Promise<{ reason: string } | { files: Record<string, string>; from: string }> {
  if (!existsSync(join(TEST_IMAGES, "python-indexer", "oci", "index.json"))) return { reason: `the test image ${IMAGE} is missing in ${TEST_IMAGES} (scripts/test-images.sh builds it)` };
  const probe = await new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: join(tmpdir(), "airlock-index-probe"), images: [TEST_IMAGES], logger: silentLogger }).probe();
  if (!probe.usable) return { reason: `bwrap: ${probe.detail}` };
  const sources = await pythonSources(join(work, "download"));
  return "missing" in sources ? { reason: sources.missing } : sources;
}

async function dockerMissing(): Promise<string | undefined> {
  const missing = await dockerUnavailable(new DockerRuntime({ host: SOCKET, logger: silentLogger }));
  if (missing) return missing;
  const client = new DockerClient({ socketPath: SOCKET });
  try {
    return (await client.imageExists(IMAGE)) ? undefined : `test image ${IMAGE} is missing in Docker (scripts/test-images.sh imports it)`;
  } finally {
    await client.close();
  }
}

async function pypiAnswers(): Promise<boolean> {
  try {
    return (await fetch("https://pypi.org/simple/setuptools/", { method: "HEAD", signal: AbortSignal.timeout(10_000) })).ok;
  } catch {
    return false;
  }
}

const found = await unavailable();
const skip = "reason" in found ? found.reason : undefined;
if (skip) process.stdout.write(`# SKIP indexing with scip-python: ${skip}\n`);
const dockerSkip = skip ?? (await dockerMissing());
if (dockerSkip && !skip) process.stdout.write(`# SKIP indexing with scip-python in docker: ${dockerSkip}\n`);
const online = skip ? false : await pypiAnswers();
if (!skip && !online) process.stdout.write("# NOTE PyPI does not answer from this machine: the install step builds the package offline (a coordinator-held index config), not through the gateway\n");

function pythonSuite(runtime: "bwrap" | "docker", reason: string | undefined, runtimeArgs: string[]): void {
  describe(`indexing with scip-python in ${runtime}`, { skip: reason }, () => {
    let cluster: Cluster;
    before(async () => {
      cluster = await startCluster({ runtime, executorArgs: [...runtimeArgs, "--egress-allow", "pypi.org:443,files.pythonhosted.org:443"] });
    });
    after(async () => {
      await cluster?.close();
    });

    it(`repo add --auto-index indexes ${PYTHON_PACKAGE.name}'s modules: each is a document, a class defined in one is referenced from another; repo sync indexes a new HEAD`, async () => {
      assert.ok("files" in found);
      const origin = await makeRepo(join(work, `toml-${runtime}`), found.files);
      const cli = async (...args: string[]): Promise<string> =>
        (await runChecked(process.execPath, [ENTRY, ...args, "--url", cluster.coordinator.url, "--token", cluster.coordinator.apiToken], { env: baseEnv })).stdout.toString();
      const config = join(work, `index-config-${runtime}.yaml`);
      await writeFile(config, `roots:\n  - path: .\n    install: '${PYTHON_COPY} && pip3 install --user --no-warn-script-location --no-build-isolation --no-deps --no-index "$src"'\n`);
      const added = await cli("repo", "add", "oss/toml", origin, "--auto-index", ...(online ? [] : ["--index-config", config]));
      assert.match(added, /auto-index on/);
      const queued = added.match(/auto-index of ([0-9a-f]{12}): \. scip-python@0\.6\.6 queued \(index (\d+), job (\d+)\)/);
      assert.ok(queued, added);
      const job = await waitForJob(cluster.api, Number(queued[3]), undefined, 300_000);
      const log = (await logText(cluster.api, job, "install")) + (await logText(cluster.api, job, "index"));
      assert.equal(job.state, "completed", `${job.failureMessage}\n${log}`);
      assert.match(log, /Successfully installed toml-0\.10\.2/, "pip installed the project into the job's user site");
      const index = await waitForIndex(cluster.api, Number(queued[2]));
      assert.equal(index.state, "completed", index.failureMessage ?? "");
      assert.deepEqual([index.indexer, index.indexerVersion], ["scip-python", "0.6.6"]);

      const bytes = Buffer.concat(await Array.fromAsync(await cluster.api.indexFile(index.id), (chunk) => Buffer.from(chunk)));
      const scip = readScip(bytes);
      assert.deepEqual(scip.tool, { name: "scip-python", version: "0.6.6" });
      const modules = Object.keys(found.files).filter((path) => path.endsWith(".py")).sort();
      assert.ok(modules.includes("toml/decoder.py") && modules.includes("toml/encoder.py"), `the package has its modules: ${modules.join(", ")}`);
      assert.deepEqual(scip.documents.map((document) => document.path).sort(), modules, "every module is a document, and nothing else (no build/ copies, no installed copy)");
      const defined = scip.documents.find((document) => document.path === "toml/decoder.py")!.occurrences.find((occurrence) => occurrence.symbol.endsWith("`toml.decoder`/InlineTableDict#") && (occurrence.roles & DEFINITION_ROLE) !== 0);
      assert.ok(defined, "toml/decoder.py defines the class InlineTableDict");
      const encoder = scip.documents.find((document) => document.path === "toml/encoder.py")!;
      assert.ok(encoder.occurrences.some((occurrence) => occurrence.symbol === defined.symbol && (occurrence.roles & DEFINITION_ROLE) === 0), `toml/encoder.py references ${defined.symbol}`);
      const counts = countScip(scip);
      assert.deepEqual({ documents: index.documents, symbols: index.symbols, occurrences: index.occurrences }, counts);
      assert.match(await cli("index", "show", String(index.id)), new RegExp(`documents ${counts.documents}, symbols ${counts.symbols}, occurrences ${counts.occurrences}`));

      // A new commit on the origin: `repo sync` fetches it and indexes the new HEAD; again: nothing new.
      const next = await commitFile(origin, "CHANGES.txt", "next\n");
      const synced = await cli("repo", "sync", "oss/toml");
      assert.match(synced, new RegExp(`HEAD ${next.slice(0, 12)} \\(was ${index.commit.slice(0, 12)}\\)`));
      assert.match(synced, new RegExp(`auto-index of ${next.slice(0, 12)}: \\. scip-python@0\\.6\\.6 queued`));
      assert.match(await cli("repo", "sync", "oss/toml"), /\(unchanged\)$/m);
      assert.equal((await cluster.api.listIndexes({ repository: "oss/toml" })).length, 2);
    });
  });
}

pythonSuite("bwrap", skip, ["--images", TEST_IMAGES]);
pythonSuite("docker", dockerSkip, ["--docker-host", SOCKET]);
