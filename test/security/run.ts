/**
 * Runs the adversarial jobs against one runtime through a real coordinator and executor, and
 * gathers the evidence the probe table judges: the jobs' logs, diff and artifacts, then what the
 * host shows once they ended (its process table, the runtime's leftovers, planted files, files
 * only git run on the host could have made, and the job as the CLI and Chromium render it).
 *
 * Jobs, in order: `explore` (one step per probe group, then the diff and link outputs); `holder`
 * (keeps its workspace alive) while `checker` looks for it and for what `explore` planted; `files`
 * (writes `files:` through links the repository has).
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join, relative } from "node:path";
import type { Page } from "playwright-core";
import { gitEnv, runChecked } from "../../src/common/exec.ts";
import type { JobView } from "../../src/protocol/index.ts";
import type { Browser } from "../helpers/browser.ts";
import { baseEnv, BIN, commitFile, makeRepo, ROOT, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { TEST_IMAGES } from "../helpers/bwrap.ts";
import type { Evidence, HostFacts } from "./probes.ts";
import { hostFilesCommands, LINK_OUTPUTS, networkCommands, plantCommands, plantedCheckCommands, procCommands, sleepersCommand, workspaceCommands, type ProbeContext } from "./scripts.ts";
import type { ProbeTarget } from "./targets.ts";

const IMAGE = "airlock-test/busybox";

async function readOr(path: string): Promise<string> {
  return readFile(path, "utf8").catch(() => "");
}

export async function hostFacts(cluster: Cluster, context: ProbeContext, realPaths: string[]): Promise<HostFacts> {
  const shadow = (await readOr("/etc/shadow")).split("\n").find((line) => line.startsWith("root:"));
  const identifiers: string[] = [];
  for (const name of await readdir("/sys/class/net").catch(() => [] as string[])) {
    const mac = (await readOr(`/sys/class/net/${name}/address`)).trim();
    if (mac && mac !== "00:00:00:00:00:00") identifiers.push(mac);
  }
  for (const path of ["/sys/devices/virtual/dmi/id/product_uuid", "/etc/machine-id"]) {
    const value = (await readOr(path)).trim();
    if (value) identifiers.push(value);
  }
  return {
    hostname: hostname(),
    shadowLine: shadow,
    tokens: [cluster.coordinator.apiToken, cluster.coordinator.executorToken],
    paths: [...new Set([context.dir, ...context.dataDirs, ROOT, TEST_IMAGES, ...realPaths])],
    identifiers,
  };
}

/** The repository the jobs check out: plain files, and links into the host for the `files:` probe. */
export async function makeProbeRepo(cluster: Cluster, context: ProbeContext): Promise<void> {
  await mkdir(context.hostSecretDir, { recursive: true });
  await writeFile(context.hostSecretFile, `HOST-SECRET-${context.nonce}\n`);
  const repo = await makeRepo(join(cluster.dir, "probe-repo"), { "README.md": "# probes\n", "tracked.txt": "tracked\n" });
  await symlink(context.hostSecretDir, join(repo, "escape-dir"));
  await symlink(context.hostSecretFile, join(repo, "escape-file"));
  const env = gitEnv(baseEnv);
  await runChecked("git", ["add", "escape-dir", "escape-file"], { cwd: repo, env });
  await runChecked("git", ["-c", "user.name=Test", "-c", "user.email=test@airlock.invalid", "commit", "--quiet", "-m", "links"], { cwd: repo, env });
  await cluster.api.addRepository("probe/repo", repo);
  await makeRepo(context.otherRepo, { "other.txt": "other\n" });
  context.otherRepoHead = await commitFile(context.otherRepo, "other.txt", `other ${context.nonce}\n`);
}

async function logs(cluster: Cluster, job: JobView): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of job.entries) out[entry.key] = (await cluster.api.readLog(job.id, entry.key)).toString("latin1");
  return out;
}

async function hostSleepers(context: ProbeContext): Promise<string[]> {
  const wanted = Object.values(context.sleeps).map((n) => `sleep\0${n}`);
  const found: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readOr(`/proc/${pid}/cmdline`);
    if (wanted.some((needle) => cmdline.includes(needle))) found.push(`${pid}: ${cmdline.replaceAll("\0", " ").trim()}`);
  }
  return found;
}

/** Files named like the planted ones anywhere under `roots` (image stores, data dirs). */
async function plantedUnder(roots: string[], nonce: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, entry.name);
      if (entry.name.includes(`planted-${nonce}`)) found.push(path);
      else if (entry.isDirectory() && !entry.isSymbolicLink() && depth < 12) await walk(path, depth + 1);
    }
  };
  for (const root of roots) await walk(root, 0);
  return found;
}

function cli(args: string[], cluster: Cluster): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: { ...baseEnv, AIRLOCK_URL: cluster.coordinator.url, AIRLOCK_TOKEN: cluster.coordinator.apiToken }, stdio: ["ignore", "pipe", "pipe"] });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.on("error", reject);
    child.on("close", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

async function inBrowser(browser: Browser | string, cluster: Cluster, job: JobView): Promise<Evidence["web"]> {
  if (typeof browser === "string") return { skip: browser };
  const page: Page = await browser.context.newPage();
  const dialogs: string[] = [];
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  try {
    await page.goto(`${cluster.coordinator.url}/`);
    await page.getByLabel("API token").fill(cluster.coordinator.apiToken);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByLabel("API token").waitFor({ state: "detached" });
    await page.goto(`${cluster.coordinator.url}/jobs/${job.id}`);
    await page.getByRole("heading", { level: 1, name: `Job ${job.id}` }).waitFor();
    await page.getByRole("button", { name: "workspace", exact: true }).click();
    await page.locator(".log-line", { hasText: "ESC-PROBE" }).first().waitFor({ timeout: 20_000 });
    await page.getByRole("navigation", { name: "Changed files" }).waitFor({ timeout: 20_000 });
    await page.locator("body", { hasText: "onerror=window.__pwned=3" }).first().waitFor({ timeout: 20_000 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const pwned = await page.evaluate<unknown>("window.__pwned");
    const injected = await page.evaluate<number>(`document.querySelectorAll('img[src="x"], script:not([src]), [onerror]').length`);
    return { pwned, injected, dialogs };
  } catch (error) {
    const shot = await browser.screenshot(page, `security-probes-job-${job.id}`).catch(() => "no screenshot");
    return { failed: `the job page did not show the probe's output (${(error as Error).message.split("\n")[0]}; screenshot ${shot})` };
  } finally {
    await page.close();
  }
}

export async function gatherEvidence(target: ProbeTarget, cluster: Cluster, context: ProbeContext, host: HostFacts, browser: Browser | string): Promise<Evidence> {
  const submit = (spec: Record<string, unknown>) => cluster.api.submit({ repository: "probe/repo", commit: "main", isolation: target.isolation, ...spec });
  const exploreSubmitted = await submit({
    steps: [
      { key: "host-files", image: IMAGE, commands: hostFilesCommands(context) },
      { key: "proc", image: IMAGE, commands: procCommands() },
      { key: "network", image: IMAGE, commands: networkCommands(context) },
      { key: "plant", image: IMAGE, commands: plantCommands(context) },
      { key: "after-plant", image: IMAGE, commands: [sleepersCommand(context)] },
      { key: "workspace", image: IMAGE, commands: workspaceCommands(context) },
    ],
    outputs: { diff: true, paths: LINK_OUTPUTS },
  });
  const exploreJob = await waitForJob(cluster.api, exploreSubmitted.id, undefined, target.jobTimeoutMs);
  const artifacts: Record<string, Buffer> = {};
  for (const artifact of exploreJob.artifacts) artifacts[artifact.name] = await cluster.api.artifactBytes(exploreJob.id, artifact.name);
  const diff = artifacts.diff?.toString("latin1") ?? "";

  const holder = await submit({
    files: { "other-job-marker.txt": { content: `OTHER-JOB-${context.nonce}\n` } },
    steps: [{ key: "hold", image: IMAGE, commands: ["echo holding", "sleep 600"] }],
  });
  await waitForJob(cluster.api, holder.id, (job) => job.entries.some((entry) => entry.key === "hold" && entry.state === "running" && entry.size > 0), target.jobTimeoutMs);
  const root = target.workspaceRoot(cluster.dir);
  const holderDir = (await readdir(root)).find((name) => name.startsWith(`job-${holder.id}-`));
  const otherWorkspace = holderDir ? join(root, holderDir, "workspace") : join(root, `job-${holder.id}-1`, "workspace");
  const checkerSubmitted = await submit({
    steps: [
      { key: "persisted", image: IMAGE, commands: plantedCheckCommands(context) },
      {
        key: "other-job",
        image: IMAGE,
        commands: [`cat ${otherWorkspace}/other-job-marker.txt 2>/dev/null || true`, `ls -la ${otherWorkspace} ${root} 2>/dev/null || true`, "find / -name other-job-marker.txt 2>/dev/null | grep -v '^/proc/' || true"],
      },
    ],
  });
  const checkerJob = await waitForJob(cluster.api, checkerSubmitted.id, undefined, target.jobTimeoutMs);
  await cluster.api.cancel(holder.id);
  await waitForJob(cluster.api, holder.id, undefined, target.jobTimeoutMs);

  const secretBefore = await readOr(context.hostSecretFile);
  const filesSubmitted = await submit({
    files: { "escape-dir/planted-by-files.txt": { content: "written through a link\n" }, "escape-file": { content: "overwritten through a link\n" } },
    steps: [{ key: "never", image: IMAGE, commands: ["echo should not run"] }],
  });
  const filesJob = await waitForJob(cluster.api, filesSubmitted.id, undefined, target.jobTimeoutMs);
  const touched = [
    ...(existsSync(join(context.hostSecretDir, "planted-by-files.txt")) ? ["escape-dir/planted-by-files.txt"] : []),
    ...((await readOr(context.hostSecretFile)) !== secretBefore ? ["escape-file"] : []),
  ];

  // Jobs ended: give a runtime's asynchronous teardown (container removal) a moment, then look.
  const ids = [exploreJob.id, holder.id, checkerJob.id, filesJob.id];
  let leftovers: string[] = [];
  for (let tries = 0; tries < 50; tries += 1) {
    leftovers = (await Promise.all(ids.map(async (id) => (await target.leftovers(id)).map((line) => `job ${id}: ${line}`)))).flat();
    if (leftovers.length === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    target,
    context,
    host,
    explore: { job: exploreJob, logs: await logs(cluster, exploreJob), diff, artifacts },
    checker: { job: checkerJob, logs: await logs(cluster, checkerJob), otherWorkspace },
    files: { job: filesJob, log: Object.values(await logs(cluster, filesJob)).join("\n") + (filesJob.failureMessage ?? ""), touched },
    hostSleepers: await hostSleepers(context),
    leftovers,
    plantedOnHost: (await plantedUnder([...context.dataDirs, cluster.dir], context.nonce)).map((path) => relative(cluster.dir, path)),
    gitMarkersFound: (await readdir(cluster.dir)).filter((name) => name.startsWith("git-ran-")),
    abstractListedOnHost: (await readOr("/proc/net/unix")).includes(context.abstractName),
    cli: { logs: await cli(["jobs", "logs", String(exploreJob.id)], cluster), diff: await cli(["jobs", "diff", String(exploreJob.id)], cluster) },
    web: await inBrowser(browser, cluster, exploreJob),
  };
}
