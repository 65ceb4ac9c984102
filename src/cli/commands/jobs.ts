/** `airlock submit` and `airlock jobs ...`: submit, list, show, logs, cancel, diff, artifacts. */
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { Readable } from "node:stream";
import { parse as parseYaml } from "yaml";
import { formatDuration, formatSize, NotFoundError, ValidationError, type JobView } from "../../protocol/index.ts";
import type { ApiClient } from "../api-client.ts";
import { println, table, type CliIO } from "../context.ts";
import { followJob } from "../follow.ts";
import { inert, InertText } from "../inert.ts";

/** Exit codes of `submit --follow` and `jobs logs -f`: 0 completed, 1 failed, 2 anything else. */
export function exitCodeFor(state: string): number {
  return state === "completed" ? 0 : state === "failed" ? 1 : 2;
}

async function readSpec(file: string): Promise<unknown> {
  const text = file === "-" ? await new Response(Readable.toWeb(process.stdin) as ReadableStream).text() : await readFile(file, "utf8").catch(() => {
    throw new ValidationError(`cannot read ${file}`);
  });
  try {
    return parseYaml(text) as unknown;
  } catch (error) {
    throw new ValidationError(`${file} is not valid YAML or JSON: ${(error as Error).message}`);
  }
}

export async function submitCommand(client: ApiClient, file: string, follow: boolean, io: CliIO): Promise<number> {
  const job = await client.submit(await readSpec(file));
  const where = job.repository ? ` ${job.repository}@${job.commit?.slice(0, 12)}` : "";
  println(io.stderr, `submitted job ${job.id} to queue ${job.queue}${where}`);
  if (!follow) {
    println(io.stdout, String(job.id));
    return 0;
  }
  const state = await followJob(client, job.id, { out: io.stdout, notices: io.stderr });
  const final = await client.getJob(job.id);
  println(io.stderr, `\njob ${job.id} ${state}${final.failureMessage ? `: ${final.failureMessage}` : ""}`);
  println(io.stdout, String(job.id));
  return exitCodeFor(state);
}

export async function listCommand(client: ApiClient, options: Record<string, string | undefined>, io: CliIO): Promise<number> {
  const jobs = await client.listJobs({
    ...(options.state ? { state: options.state as JobView["state"] } : {}),
    ...(options.queue ? { queue: options.queue } : {}),
    ...(options.repository ? { repository: options.repository } : {}),
    ...(options.limit ? { limit: Number(options.limit) } : {}),
  });
  const rows = [["ID", "STATE", "QUEUE", "REPOSITORY", "COMMIT", "ATTEMPT", "AGE"]];
  const now = Date.now();
  for (const job of jobs) {
    rows.push([
      String(job.id),
      job.state,
      job.queue,
      job.repository ?? "-",
      job.commit?.slice(0, 12) ?? "-",
      `${job.attempt}/${job.maxAttempts}`,
      formatDuration(now - Date.parse(job.createdAt)),
    ]);
  }
  println(io.stdout, table(rows));
  return 0;
}

export async function showCommand(client: ApiClient, id: number, json: boolean, io: CliIO): Promise<number> {
  const job = await client.getJob(id);
  if (json) {
    println(io.stdout, JSON.stringify(job, null, 2));
    return 0;
  }
  println(io.stdout, `job ${job.id}: ${job.state}${job.cancelRequested && job.state === "processing" ? " (cancel requested)" : ""}`);
  println(io.stdout, `queue ${job.queue}, isolation ${job.isolation}, attempt ${job.attempt}/${job.maxAttempts}${job.executorName ? `, executor ${job.executorName}` : ""}`);
  if (job.repository) println(io.stdout, `repository ${job.repository} at ${job.commit} (${job.ref})`);
  if (job.failureMessage) println(io.stdout, `failure: ${job.failureMessage}`);
  const rows = [["ENTRY", "STATE", "EXIT", "DURATION", "LOG"]];
  for (const entry of job.entries) {
    rows.push([entry.key, entry.state, entry.exitCode === null ? "-" : String(entry.exitCode), entry.durationMs === null ? "-" : formatDuration(entry.durationMs), formatSize(entry.size)]);
  }
  println(io.stdout, table(rows));
  if (job.artifacts.length > 0) println(io.stdout, `artifacts: ${job.artifacts.map((artifact) => `${artifact.name} (${formatSize(artifact.size)})`).join(", ")}`);
  return 0;
}

export async function logsCommand(client: ApiClient, id: number, follow: boolean, io: CliIO, raw = false): Promise<number> {
  if (follow) return exitCodeFor(await followJob(client, id, { out: io.stdout, notices: io.stderr, raw }));
  const job = await client.getJob(id);
  for (const entry of job.entries) {
    if (entry.size === 0 && entry.state === "pending") continue;
    io.stderr.write(`\n── ${entry.key} ──\n`);
    const text = await client.readLog(id, entry.key);
    io.stdout.write(raw ? text : inert(text));
  }
  return 0;
}

export async function cancelCommand(client: ApiClient, id: number, io: CliIO): Promise<number> {
  const job = await client.cancel(id);
  println(io.stdout, job.state === "canceled" ? `job ${id} canceled` : `job ${id}: cancel requested; its executor will stop it`);
  return 0;
}

/** `inertText`: the artifact goes to a terminal or pipe as text (`jobs diff`), made inert unless --raw. */
export async function artifactCommand(client: ApiClient, id: number, name: string, output: string | undefined, io: CliIO, inertText = false): Promise<number> {
  const job = await client.getJob(id);
  if (!job.artifacts.some((artifact) => artifact.name === name)) {
    throw new NotFoundError(`job ${id} has no artifact "${name}"${job.artifacts.length ? ` (it has: ${job.artifacts.map((a) => a.name).join(", ")})` : ""}`);
  }
  const body = Readable.from(await client.artifact(id, name));
  if (inertText && !output) {
    const converter = new InertText();
    for await (const chunk of body as AsyncIterable<Uint8Array>) io.stdout.write(converter.push(chunk));
    io.stdout.write(converter.end());
    return 0;
  }
  await pipeline(body, output ? createWriteStream(output) : io.stdout, { end: Boolean(output) });
  return 0;
}
