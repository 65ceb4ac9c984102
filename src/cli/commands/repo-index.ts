/** `airlock repo set` and `repo sync`, and the indexing flags of `repo add` (docs/indexing.md). */
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { ValidationError, type AutoIndexOutcome, type IndexPolicyView } from "../../protocol/index.ts";
import type { ApiClient } from "../api-client.ts";
import { println, type CliIO, type ClientFlags } from "../context.ts";
import type { BatchCommandContext } from "./batch.ts";

function autoIndexFlag(value: boolean | string | undefined): boolean | undefined {
  if (value === undefined || typeof value === "boolean") return value;
  if (["true", "on", "yes"].includes(value)) return true;
  if (["false", "off", "no"].includes(value)) return false;
  throw new ValidationError(`--auto-index=${value}: say true or false`, { field: "autoIndex" });
}

async function indexConfigFlag(value: string | boolean | undefined): Promise<string | null | undefined> {
  if (value === undefined || value === true) return undefined;
  if (value === false) return null;
  try {
    return await readFile(value, "utf8");
  } catch (error) {
    throw new ValidationError(`--index-config ${value}: ${(error as Error).message}`, { field: "indexConfig" });
  }
}

function printOutcome(outcome: AutoIndexOutcome | null, io: CliIO): void {
  if (!outcome) return;
  if (outcome.error) {
    println(io.stdout, `auto-index of ${outcome.head.slice(0, 12)}: nothing queued: ${outcome.error}`);
    return;
  }
  for (const entry of outcome.plan?.entries ?? []) {
    println(io.stdout, `auto-index of ${outcome.head.slice(0, 12)}: ${entry.root} ${entry.indexer}@${entry.indexerVersion} ${entry.action} (index ${entry.index?.id ?? "-"}, job ${entry.index?.jobId ?? "-"})`);
  }
}

function describePolicy(policy: IndexPolicyView): string {
  return `repository ${policy.repository}: auto-index ${policy.autoIndex ? "on" : "off"}, index config ${policy.indexConfig === null ? "none (the tree's airlock-index.yaml or inference)" : "held by the coordinator"}${policy.seenHead ? `, HEAD seen ${policy.seenHead.slice(0, 12)}` : ""}`;
}

/** Applies the indexing flags to a repository (also after `repo add`); true when any was given. */
export async function applyPolicyFlags(client: ApiClient, repository: string, flags: { autoIndex?: boolean | string | undefined; indexConfig?: string | boolean | undefined }, io: CliIO): Promise<boolean> {
  const autoIndex = autoIndexFlag(flags.autoIndex);
  const indexConfig = await indexConfigFlag(flags.indexConfig);
  if (autoIndex === undefined && indexConfig === undefined) return false;
  const response = await client.setIndexPolicy({ repository, autoIndex, indexConfig });
  println(io.stdout, describePolicy(response.policy));
  printOutcome(response.autoIndex, io);
  return true;
}

export async function repoSetCommand(client: ApiClient, repository: string, flags: { autoIndex?: boolean | string | undefined; indexConfig?: string | boolean | undefined }, io: CliIO): Promise<number> {
  if (!(await applyPolicyFlags(client, repository, flags, io))) {
    const [policy] = await client.indexPolicies(repository);
    println(io.stdout, policy ? describePolicy(policy) : `repository ${repository}: auto-index off, index config none`);
  }
  return 0;
}

export async function repoSyncCommand(client: ApiClient, repository: string, io: CliIO): Promise<number> {
  const result = await client.syncRepository(repository);
  const moved = result.head !== result.previousHead;
  println(io.stdout, `repository ${repository}: HEAD ${result.head?.slice(0, 12) ?? "none"}${moved ? ` (was ${result.previousHead?.slice(0, 12) ?? "none"})` : " (unchanged)"}`);
  printOutcome(result.autoIndex, io);
  return 0;
}

/** Adds `set` and `sync` to the `repo` command. */
export function registerRepoIndexCommands(repo: Command, ctx: Omit<BatchCommandContext, "run">): void {
  const { io, withClientOptions, withClient } = ctx;
  withClientOptions(repo.command("set <name>").description("a repository's indexing policy: auto-index its default branch, the index config overriding airlock-index.yaml"))
    .option("--auto-index [bool]", "index the default branch on each new HEAD (--auto-index=false: stop)")
    .option("--index-config <file>", "airlock-index.yaml-style file the coordinator holds for this repository; it overrides the tree's file and inference")
    .option("--no-index-config", "remove the coordinator's index config")
    .action((name: string, flags: ClientFlags & { autoIndex?: boolean | string; indexConfig?: string | boolean }) => withClient(flags, (client) => repoSetCommand(client, name, flags, io)));
  withClientOptions(repo.command("sync <name>").description("fetch the repository's origin now; with auto-index on, a new HEAD is indexed"))
    .action((name: string, flags: ClientFlags) => withClient(flags, (client) => repoSyncCommand(client, name, io)));
}
