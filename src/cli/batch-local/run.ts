/**
 * `airlock batch run SPEC.yaml --local`: the coordinator resolves the spec into the jobs a preview
 * would run (POST /api/batches/resolve); this process runs them with the executor's JobRun and a
 * runtime of this machine, N at once, shows their progress, then uploads the results as a new
 * version of the batch (POST /api/batches/upload), or writes them under --out with --no-upload.
 *
 * States: RESOLVING -> RUNNING -> UPLOADING | WRITING -> DONE. The first SIGINT/SIGTERM cancels
 * the run (running jobs are stopped, nothing is uploaded); a second one exits at once.
 */
import { mkdir, readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { createLogger } from "../../common/logger.ts";
import { parseBatchSpec, type ResolvedWorkspace } from "../../protocol/batch.ts";
import { ValidationError } from "../../protocol/index.ts";
import { allRuntimes, selectRuntime } from "../../runtimes/index.ts";
import { clientSettings, println, type CliIO, type ClientFlags } from "../context.ts";
import { BatchLocalApi } from "./api.ts";
import { resolveLocalBatchConfig } from "./config.ts";
import { diffStat } from "./diff-stat.ts";
import { ProgressView } from "./progress.ts";
import { isExecutorEntry, summaryTable, uploadEntry, writeResults, type LocalOutcome } from "./results.ts";
import { checkIsolation, LocalRunner, localExecutorConfig, reapLeftovers, type LocalTask } from "./runner.ts";

async function readSpecText(file: string): Promise<string> {
  if (file === "-") return new Response(Readable.toWeb(process.stdin) as ReadableStream).text();
  return readFile(file, "utf8").catch(() => {
    throw new ValidationError(`cannot read ${file}`);
  });
}

function terminal(stream: NodeJS.WritableStream): { tty: boolean; columns: () => number; rows: () => number } {
  const tty = stream as NodeJS.WritableStream & { isTTY?: boolean; columns?: number; rows?: number };
  return { tty: Boolean(tty.isTTY), columns: () => tty.columns ?? 100, rows: () => tty.rows ?? 40 };
}

export async function batchRunLocalCommand(file: string, flags: ClientFlags & Record<string, unknown>, io: CliIO): Promise<number> {
  const term = terminal(io.stderr);
  const config = resolveLocalBatchConfig(flags, io.env, term.tty);
  const settings = clientSettings(flags, io);
  const text = await readSpecText(file);
  // Checked here first, so a typo costs no round trip; the coordinator checks it again.
  const spec = parseBatchSpec(text);
  const api = new BatchLocalApi(settings);
  const logger = createLogger({ level: config.logLevel, format: "text", destination: io.stderr });
  try {
    const timings: [string, number][] = [];
    let phaseStarted = Date.now();
    const phase = (name: string): void => {
      const now = Date.now();
      timings.push([name, now - phaseStarted]);
      phaseStarted = now;
    };
    const timingText = (): string => timings.map(([name, ms]) => `${name} ${(ms / 1000).toFixed(2)}s`).join(", ");
    const resolved = await api.resolve(text);
    phase("resolved");
    for (const warning of resolved.warnings) println(io.stderr, `warning: ${warning}`);
    if (resolved.workspaces.length === 0) throw new ValidationError(`batch ${spec.name} matches no repository or workspace; nothing to run`);

    const runtimes = allRuntimes({
      path: config.hostPath,
      dataDir: config.dataDir,
      images: config.images,
      logger,
      dockerHost: config.dockerHost,
      defaultImage: config.defaultImage,
      gvisorRuntime: config.gvisorRuntime,
    });
    const runtime = await selectRuntime(config.runtime, runtimes, logger);
    const targets = resolved.workspaces;
    const tasks: LocalTask[] = targets.map((target, index) => ({ id: index + 1, repository: target.repository, commit: target.commit, spec: target.spec }));
    checkIsolation(tasks, runtime);
    await mkdir(config.workspaceRoot, { recursive: true, mode: 0o700 });
    const reaped = await reapLeftovers(runtime, config.workspaceRoot);
    if (reaped > 0) println(io.stderr, `removed ${reaped} leftovers of an earlier run that died (sandboxes, workspaces)`);

    const parallel = Math.min(config.parallel, tasks.length);
    const view = new ProgressView(io.stderr, {
      tty: term.tty,
      title: `batch ${resolved.name}: ${tasks.length} ${tasks.length === 1 ? "job" : "jobs"} on this machine (runtime ${runtime.name}, isolation ${runtime.isolation}, ${parallel} at once)`,
      columns: term.columns,
      rows: term.rows,
    });
    const targetOf = new Map<number, ResolvedWorkspace>(tasks.map((task, index) => [task.id, targets[index] as ResolvedWorkspace]));
    for (const task of tasks) view.add({ id: task.id, repository: task.repository, workspace: targetOf.get(task.id)?.workspace ?? "." });
    const runner = new LocalRunner({
      runtime,
      config: localExecutorConfig({
        url: settings.url,
        userToken: settings.token,
        caPath: settings.caPath,
        runtime: runtime.name,
        parallel,
        dataDir: config.dataDir,
        workspaceRoot: config.workspaceRoot,
        images: config.images,
        hostPath: config.hostPath,
        dockerHost: config.dockerHost,
        gvisorRuntime: config.gvisorRuntime,
        defaultImage: config.defaultImage,
        name: config.name,
      }),
      logger,
      parallel,
      userToken: settings.token,
      listener: {
        onTaskState: (task, state, job) => {
          const diff = state === "completed" ? job?.artifacts.get("diff") : undefined;
          view.setState(task.id, state, { stat: diff ? diffStat(diff) : undefined, message: job?.message });
        },
        onEntryStart: (job, key) => view.step(job.payload.id, key),
        // Step output is shown as it arrives; the executor's own entries (prepare, finalize) stay
        // in the uploaded log unless they are the reason a job failed.
        onLog: (job, key, data) => {
          if (!isExecutorEntry(key)) view.log(job.payload.id, data);
        },
        onEntryFinish: (job, entry) => {
          if (entry.state === "failed" && isExecutorEntry(entry.key)) view.log(job.payload.id, job.log(entry.key));
        },
      },
    });

    let interrupted = false;
    const onSignal = (): void => {
      if (interrupted) process.exit(130);
      interrupted = true;
      println(io.stderr, "\ninterrupted: stopping the running jobs (again to exit at once); nothing will be uploaded");
      runner.cancel();
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    let outcomes: LocalOutcome[];
    try {
      phaseStarted = Date.now();
      const results = await runner.run(tasks);
      phase("ran");
      outcomes = results.map((result) => ({ target: targetOf.get(result.task.id) as ResolvedWorkspace, result }));
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      view.close();
    }

    println(io.stdout, summaryTable(outcomes));
    const completed = outcomes.filter((outcome) => outcome.result.state === "completed").length;
    const allOk = completed === outcomes.length;
    if (interrupted) {
      println(io.stderr, `canceled: ${completed} of ${outcomes.length} completed; nothing uploaded`);
      return 130;
    }
    if (!config.upload) {
      const outDir = config.outDir as string;
      const written = await writeResults(outDir, outcomes, { batch: resolved.name, runtime: runtime.name });
      phase("written");
      println(io.stdout, `\n${completed} of ${outcomes.length} completed; ${written.length} ${written.length === 1 ? "diff" : "diffs"} written under ${outDir} (results.json lists every entry)`);
      println(io.stderr, timingText());
      return allOk ? 0 : 1;
    }
    const batch = await api.upload({ spec: text, runtime: runtime.name, entries: outcomes.map(uploadEntry) });
    phase("uploaded");
    println(io.stdout, `\n${completed} of ${outcomes.length} completed; uploaded as version ${batch.version.version} of batch ${batch.name}`);
    println(io.stderr, timingText());
    println(io.stdout, `review: airlock batch show ${batch.name}; airlock batch diff ${batch.name}; then airlock batch apply ${batch.name}`);
    return allOk ? 0 : 1;
  } finally {
    api.close();
  }
}
