/** `airlock index ...`: queue the inferred indexing jobs of a repository, list, show and download indexes. */
import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { formatSize, ValidationError, type IndexView } from "../../protocol/index.ts";
import type { ApiClient } from "../api-client.ts";
import { println, table, type CliIO, type ClientFlags } from "../context.ts";
import type { BatchCommandContext } from "./batch.ts";

function indexId(value: string): number {
  const id = Number(value);
  if (!Number.isInteger(id) || id <= 0) throw new ValidationError(`"${value}" is not an index id`);
  return id;
}

const count = (value: number | null): string => (value === null ? "-" : String(value));

export async function indexCommand(client: ApiClient, repository: string, options: { commit?: string | undefined; queue?: string | undefined; dryRun: boolean }, io: CliIO): Promise<number> {
  const plan = await client.index({ repository, commit: options.commit, queue: options.queue, dryRun: options.dryRun });
  if (options.dryRun) {
    println(io.stderr, `${plan.entries.length} indexing job(s) for ${plan.repository} at ${plan.commit}`);
    println(io.stdout, JSON.stringify(plan.entries.map((entry) => ({ root: entry.root, indexer: entry.indexer, indexerVersion: entry.indexerVersion, source: entry.source, spec: entry.spec })), null, 2));
    return 0;
  }
  const rows = [["INDEX", "ROOT", "INDEXER", "ACTION", "STATE", "JOB"]];
  for (const entry of plan.entries) {
    rows.push([String(entry.index?.id ?? "-"), entry.root, `${entry.indexer}@${entry.indexerVersion}`, entry.action, entry.index?.state ?? "-", String(entry.index?.jobId ?? "-")]);
  }
  println(io.stderr, `${plan.repository} at ${plan.commit}`);
  println(io.stdout, table(rows));
  return 0;
}

export async function listCommand(client: ApiClient, repository: string | undefined, io: CliIO): Promise<number> {
  const rows = [["ID", "REPOSITORY", "COMMIT", "ROOT", "INDEXER", "STATE", "DOCUMENTS", "SYMBOLS", "OCCURRENCES", "JOB"]];
  for (const index of await client.listIndexes({ repository })) {
    rows.push([String(index.id), index.repository, index.commit.slice(0, 12), index.root, `${index.indexer}@${index.indexerVersion}`, index.state, count(index.documents), count(index.symbols), count(index.occurrences), String(index.jobId)]);
  }
  println(io.stdout, table(rows));
  return 0;
}

function describe(index: IndexView): string[] {
  return [
    `index ${index.id}: ${index.state}`,
    `repository ${index.repository} at ${index.commit}, root ${index.root}`,
    `indexer ${index.indexer} ${index.indexerVersion}, job ${index.jobId}`,
    ...(index.state === "completed" ? [`documents ${count(index.documents)}, symbols ${count(index.symbols)}, occurrences ${count(index.occurrences)}, ${formatSize(index.size ?? 0)}`] : []),
    ...(index.failureMessage ? [`failure: ${index.failureMessage}`] : []),
  ];
}

export async function showCommand(client: ApiClient, id: number, json: boolean, io: CliIO): Promise<number> {
  const index = await client.getIndex(id);
  println(io.stdout, json ? JSON.stringify(index, null, 2) : describe(index).join("\n"));
  return index.state === "failed" ? 1 : 0;
}

export async function downloadCommand(client: ApiClient, id: number, output: string, io: CliIO): Promise<number> {
  await pipeline(Readable.from(await client.indexFile(id)), createWriteStream(output));
  println(io.stderr, `wrote index ${id} to ${output}`);
  return 0;
}

/** Registers `index REPO` and its subcommands (list, show, download). */
export function registerIndexCommands(program: Command, ctx: Omit<BatchCommandContext, "run">): void {
  const { io, withClientOptions, withClient } = ctx;
  const index = withClientOptions(program.command("index").description("code indexes: `index REPO` infers and queues the indexing jobs of REPO (docs/indexing.md)"))
    .argument("[repository]", "the repository to index")
    .option("--commit <commit>", "the commit (default: the mirror's HEAD)")
    .option("--queue <queue>", "the queue for the jobs (default: default)")
    .option("--dry-run", "print the inferred job specs; queue nothing")
    .action((repository: string | undefined, flags: ClientFlags & { commit?: string; queue?: string; dryRun?: boolean }) =>
      withClient(flags, async (client) => {
        if (repository === undefined) {
          index.outputHelp();
          return 2;
        }
        return indexCommand(client, repository, { commit: flags.commit, queue: flags.queue, dryRun: Boolean(flags.dryRun) }, io);
      }),
    );
  // The client options are the parent's too, and commander gives them to it wherever they appear.
  const merged = <T extends ClientFlags>(flags: T): T => ({ ...(index.opts<ClientFlags>()), ...flags });
  withClientOptions(index.command("list").description("indexes, newest first, with their counts"))
    .option("--repo <repository>", "only this repository")
    .action((flags: ClientFlags & { repo?: string }) => withClient(merged(flags), (client) => listCommand(client, flags.repo, io)));
  withClientOptions(index.command("show <id>").description("an index: its key, state, job and counts (documents, symbols, occurrences)"))
    .option("--json", "print the index as JSON")
    .action((id: string, flags: ClientFlags & { json?: boolean }) => withClient(merged(flags), (client) => showCommand(client, indexId(id), Boolean(flags.json), io)));
  withClientOptions(index.command("download <id>").description("save an index's index.scip"))
    .requiredOption("-o, --output <file>", "the file to write")
    .action((id: string, flags: ClientFlags & { output: string }) => withClient(merged(flags), (client) => downloadCommand(client, indexId(id), flags.output, io)));
}
