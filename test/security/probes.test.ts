/**
 * The standing adversarial suite: every probe of probes.ts, as real jobs through a real
 * coordinator and executor, for each sandboxing runtime (bwrap, docker, gvisor, microvm). Prints
 * the table (probe × runtime: holds / breaks / known / skipped) and writes it to
 * test-artifacts/security-probes.md; any break fails its test. A "known" cell is an exposure
 * that the docs name and no setting here can remove; it fails too once it is not documented.
 * The shell runtime is left out: it runs steps on the host by design (isolation none).
 */
import assert from "node:assert/strict";
import { mkdir, readFile, realpath, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { launchBrowser, type Browser } from "../helpers/browser.ts";
import { ROOT, startCluster, type Cluster } from "../helpers/cluster.ts";
import { PROBES, type Evidence, type Verdict } from "./probes.ts";
import { gatherEvidence, hostFacts, makeProbeRepo } from "./run.ts";
import { probeContext } from "./scripts.ts";
import { TARGETS } from "./targets.ts";

type Cell = { state: "holds" | "breaks" | "known" | "skipped"; note: string };
const table = new Map<string, Map<string, Cell>>();
const EXCLUDED = "shell: not in the table: it runs steps on the host by design (isolation none), for trusted code only";

function listen(server: Server, where: number | string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    if (typeof where === "number") server.listen(where, "127.0.0.1", resolve);
    else server.listen(where, resolve);
  });
}

function render(): string {
  const runtimes = TARGETS.map((target) => target.name);
  const lines = [`| probe | ${runtimes.join(" | ")} |`, `|---|${runtimes.map(() => "---").join("|")}|`];
  const notes: string[] = [];
  const skippedRuntimes = new Map<string, string>();
  for (const runtime of runtimes) {
    const cells = [...(table.get(runtime)?.values() ?? [])];
    if (cells.length === 0 || cells.every((cell) => cell.state === "skipped" && cell.note === cells[0]?.note)) skippedRuntimes.set(runtime, cells[0]?.note ?? "not run");
  }
  for (const probe of PROBES) {
    const cells = runtimes.map((runtime) => {
      const cell = table.get(runtime)?.get(probe.id) ?? { state: "skipped", note: "not run" };
      if (skippedRuntimes.has(runtime)) return "skipped";
      if (cell.note && cell.state !== "holds") {
        notes.push(`- ${probe.id} on ${runtime}: ${cell.note}`);
        return `${cell.state} [${notes.length}]`;
      }
      return cell.state;
    });
    lines.push(`| ${probe.title} | ${cells.join(" | ")} |`);
  }
  const skipped = [...skippedRuntimes].map(([runtime, why]) => `- ${runtime}: skipped: ${why}`);
  return [...lines, "", ...notes.map((note, index) => note.replace(/^- /, `${index + 1}. `)), "", ...skipped, `- ${EXCLUDED}`].join("\n");
}

describe("adversarial probes against every sandboxing runtime", () => {
  let browser: Browser | string;
  const service = createServer((socket) => socket.end("HOST-SERVICE-REACHED\n"));
  const abstract = createServer((socket) => socket.end("HOST-ABSTRACT-REACHED\n"));
  let port = 0;
  let abstractName = "";

  before(async () => {
    browser = await launchBrowser();
    if (typeof browser === "string") process.stdout.write(`# SKIP the web UI probe: ${browser}\n`);
    await listen(service, 0);
    const address = service.address();
    port = typeof address === "object" && address ? address.port : 0;
  });

  after(async () => {
    const text = render();
    process.stdout.write(`\n${text}\n`);
    await mkdir(join(ROOT, "test-artifacts"), { recursive: true });
    await writeFile(join(ROOT, "test-artifacts", "security-probes.md"), `${text}\n`);
    if (typeof browser !== "string") await browser.close();
    await new Promise((resolve) => service.close(resolve));
    if (abstract.listening) await new Promise((resolve) => abstract.close(resolve));
  });

  for (const target of TARGETS) {
    describe(`runtime ${target.name}`, { concurrency: false }, () => {
      let cluster: Cluster | undefined;
      let evidence: Evidence | undefined;
      let skip: string | undefined;
      const cells = new Map<string, Cell>();
      table.set(target.name, cells);

      before(async () => {
        skip = await target.unavailable();
        if (skip) {
          process.stdout.write(`# SKIP probes on ${target.name}: ${skip}\n`);
          return;
        }
        cluster = await startCluster({ runtime: target.name, executors: 0 });
        cluster.startExecutor([...target.executorArgs(cluster.dir), "--max-jobs", "2"]);
        const context = probeContext(cluster.dir, target.dataDirs(cluster.dir), port);
        if (!abstract.listening) await listen(abstract, `\0${context.abstractName}`);
        else context.abstractName = abstractName;
        abstractName = context.abstractName;
        await makeProbeRepo(cluster, context);
        const realPaths = await Promise.all([cluster.dir, ...context.dataDirs, ROOT].map((path) => realpath(path).catch(() => path)));
        evidence = await gatherEvidence(target, cluster, context, await hostFacts(cluster, context, realPaths), browser);
        // What the jobs printed, for a reviewer to check the verdicts against.
        const dump = join(ROOT, "test-artifacts", "security-probes", target.name);
        await mkdir(dump, { recursive: true });
        for (const [name, logs] of [["explore", evidence.explore.logs], ["checker", evidence.checker.logs]] as const) {
          for (const [key, text] of Object.entries(logs)) await writeFile(join(dump, `${name}-${key}.log`), text, "latin1");
        }
        await writeFile(join(dump, "explore.diff"), evidence.explore.diff, "latin1");
        await writeFile(join(dump, "cli-logs.txt"), evidence.cli.logs);
      });

      after(async () => {
        await cluster?.close();
      });

      for (const probe of PROBES) {
        it(probe.title, async (t) => {
          if (skip || !evidence) {
            cells.set(probe.id, { state: "skipped", note: skip ?? "the jobs did not run" });
            return t.skip(skip ?? "the jobs did not run");
          }
          // A probe whose job did not run to the end proved nothing: that counts as a break.
          const unfinished = [evidence.explore.job, evidence.checker.job].find((job) => job.state !== "completed");
          const verdict: Verdict = unfinished
            ? { holds: false, detail: `probe job ${unfinished.id} ended ${unfinished.state}: ${unfinished.failureMessage ?? ""}` }
            : probe.check(evidence);
          if ("skip" in verdict) {
            cells.set(probe.id, { state: "skipped", note: verdict.skip });
            return t.skip(verdict.skip);
          }
          const known = target.known[probe.id];
          if (!verdict.holds && known) {
            // Documented exposure: it must stay documented where the table says.
            assert.match(await readFile(join(ROOT, "docs", known.doc), "utf8"), known.mentions, `the exposure is documented in docs/${known.doc}`);
            cells.set(probe.id, { state: "known", note: `${known.why}; seen: ${verdict.detail}` });
            return;
          }
          cells.set(probe.id, verdict.holds ? { state: "holds", note: verdict.detail ?? "" } : { state: "breaks", note: verdict.detail });
          assert.ok(verdict.holds, `${probe.id} breaks on ${target.name}: ${verdict.holds ? "" : verdict.detail}`);
        });
      }
    });
  }
});
