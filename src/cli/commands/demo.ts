/**
 * `airlock demo`: a coordinator and an executor as child processes, a few sample repositories
 * made with real git, sample jobs that change files, their live logs and diffs.
 * With --once it exits 0 only if every sample job completed with the expected diff.
 */
import { mkdtemp, mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gitEnv, runChecked } from "../../common/exec.ts";
import { ApiClient } from "../api-client.ts";
import { println, type CliIO } from "../context.ts";
import { followJob } from "../follow.ts";
import { portFree, startAirlock, startLocalCoordinator, type ManagedProcess } from "../local-cluster.ts";
import { waitForSignal } from "../signals.ts";
import { DEMO_JOBS, DEMO_REPOSITORIES, type DemoJob } from "./demo-samples.ts";

async function createRepository(dir: string, files: Record<string, string>, env: Record<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(dir, path, ".."), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  const git = (args: string[]) => runChecked("git", args, { cwd: dir, env });
  await git(["init", "--quiet", "--initial-branch=main"]);
  await git(["add", "."]);
  await git(["-c", "user.name=Airlock Demo", "-c", "user.email=demo@airlock.invalid", "commit", "--quiet", "-m", "Initial commit"]);
}

export async function demoCommand(flags: { once?: boolean; data?: string; listen?: string; runtime?: string }, io: CliIO): Promise<number> {
  const once = Boolean(flags.once);
  const dataRoot = flags.data ? resolve(flags.data) : await mkdtemp(join(tmpdir(), "airlock-demo-"));
  const port = flags.listen ? Number(flags.listen.split(":").pop()) : (await portFree(7780)) ? 7780 : undefined;
  const childEnv: Record<string, string | undefined> = { PATH: io.env.PATH, HOME: io.env.HOME, TMPDIR: io.env.TMPDIR };
  println(io.stdout, `Airlock demo: data in ${dataRoot}`);

  const coordinator = await startLocalCoordinator({ entry: io.entry, dataDir: join(dataRoot, "coordinator"), env: childEnv, ...(port ? { port } : {}) });
  const processes: ManagedProcess[] = [coordinator];
  const client = new ApiClient({ url: coordinator.url, token: coordinator.apiToken });
  try {
    println(io.stdout, `coordinator at ${coordinator.url} (log: ${coordinator.logFile})`);
    const env = gitEnv({ PATH: io.env.PATH });
    for (const [name, files] of Object.entries(DEMO_REPOSITORIES)) {
      const dir = join(dataRoot, "samples", name);
      await createRepository(dir, files, env);
      await client.addRepository(name, dir);
      println(io.stdout, `repository ${name}: ${Object.keys(files).length} files, mirrored from ${dir}`);
    }

    const executor = startAirlock(
      io.entry,
      ["executor", "run", "--url", coordinator.url, "--runtime", flags.runtime ?? "auto", "--data", join(dataRoot, "executor"), "--heartbeat-interval", "2s", "--max-jobs", "2", "--log-format", "json"],
      // AIRLOCK_IMAGES tells daemonless runtimes (bwrap) where the sample images are.
      { env: { ...childEnv, AIRLOCK_IMAGES: io.env.AIRLOCK_IMAGES, AIRLOCK_EXECUTOR_TOKEN: coordinator.executorToken }, logFile: join(dataRoot, "executor.log") },
    );
    processes.unshift(executor);
    println(io.stdout, `executor started (log: ${executor.logFile})`);

    const results: { job: DemoJob; ok: boolean; why: string }[] = [];
    const submitted = [];
    for (const job of DEMO_JOBS) submitted.push({ job, view: await client.submit(job.spec) });
    for (const { job, view } of submitted) {
      println(io.stdout, `\n━━ job ${view.id}: ${job.title} (${job.spec.repository}) ━━`);
      const state = await followJob(client, view.id, { out: io.stdout });
      const final = await client.getJob(view.id);
      println(io.stdout, `\n→ job ${view.id} ${state}${final.failureMessage ? `: ${final.failureMessage}` : ""}`);
      let diff = "";
      if (final.artifacts.some((artifact) => artifact.name === "diff")) {
        diff = (await client.artifactBytes(view.id, "diff")).toString("utf8");
        println(io.stdout, `\n── diff of job ${view.id} ──\n${diff}`);
      }
      const missing = job.expectInDiff.filter((needle) => !diff.includes(needle));
      const ok = state === "completed" && missing.length === 0;
      results.push({ job, ok, why: state !== "completed" ? `ended ${state}` : missing.length ? `diff lacks ${JSON.stringify(missing[0])}` : "expected diff" });
    }

    println(io.stdout, "\n━━ summary ━━");
    for (const result of results) println(io.stdout, `${result.ok ? "ok  " : "FAIL"}  ${result.job.title}: ${result.why}`);
    println(io.stdout, `\nCoordinator: ${coordinator.url}`);
    println(io.stdout, `Try:  export AIRLOCK_URL=${coordinator.url} AIRLOCK_TOKEN=$(cat ${join(coordinator.dataDir, "api-token")})`);
    println(io.stdout, "      bin/airlock jobs list; bin/airlock jobs show 1; bin/airlock jobs diff 1");
    println(io.stdout, `Web UI: ${coordinator.url}/ (sign in with the API token in ${join(coordinator.dataDir, "api-token")})`);
    const allOk = results.every((result) => result.ok);
    if (once) return allOk ? 0 : 1;
    println(io.stdout, "\nThe coordinator and executor keep running; press Ctrl-C to stop them.");
    await waitForSignal();
    return allOk ? 0 : 1;
  } finally {
    await client.close();
    for (const process of processes) await process.stop();
  }
}
