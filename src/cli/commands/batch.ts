/**
 * `airlock batch ...`: the command tree. Registration only (cheap: commander types); each action
 * loads its module when run. The server-side subcommands are here; `batch run --local` is
 * registered by `registerBatchLocal` (commands/batch-local.ts).
 */
import type { Command } from "commander";
import type { ApiClient } from "../api-client.ts";
import type { CliIO, ClientFlags } from "../context.ts";
import { registerBatchLocal } from "./batch-local.ts";

/** What main.ts lends the batch commands: its option helpers and runners. */
export interface BatchCommandContext {
  io: CliIO;
  /** Adds --url, --token, --data, --ca. */
  withClientOptions: (command: Command) => Command;
  /** Runs an action with an API client (closed afterwards); its result is the exit code. */
  withClient: (flags: ClientFlags, action: (client: ApiClient) => Promise<number>) => Promise<void>;
  /** Runs an action without a client; its result is the exit code. */
  run: (action: () => Promise<number>) => Promise<void>;
}

const actions = () => import("./batch-actions.ts");

export function registerBatchCommands(program: Command, ctx: BatchCommandContext): Command {
  const { io, withClientOptions, withClient } = ctx;
  const batch = program.command("batch").description("batch changes: one spec over many repositories, a diff each, applied as branches");

  withClientOptions(batch.command("preview <spec>").description("store a new version of the batch in SPEC.yaml and run it (one job per repository/workspace); live table until all end"))
    .option("--detach", "return once the jobs are queued")
    .action((file: string, flags: ClientFlags & { detach?: boolean }) =>
      withClient(flags, async (client) => (await actions()).previewCommand(client, file, { detach: Boolean(flags.detach) }, io)),
    );
  withClientOptions(batch.command("list").description("batches, newest first, with the state of their latest version"))
    .action((flags: ClientFlags) => withClient(flags, async (client) => (await actions()).listCommand(client, io)));
  withClientOptions(batch.command("show <name>").description("a batch's latest version: each repository's state, cache use, diff size and apply result"))
    .option("--json", "print the batch as JSON")
    .option("--version <n>", "another version than the latest")
    .action((name: string, flags: ClientFlags & { json?: boolean; version?: string }) =>
      withClient(flags, async (client) => (await actions()).showCommand(client, name, { json: Boolean(flags.json), version: flags.version }, io)),
    );
  withClientOptions(batch.command("diff <name>").description("the combined diff of the batch (or of one repository)"))
    .option("--repo <repository>", "only this repository")
    .option("--workspace <dir>", "only this workspace of the repository")
    .action((name: string, flags: ClientFlags & { repo?: string; workspace?: string }) =>
      withClient(flags, async (client) => (await actions()).diffCommand(client, name, { repository: flags.repo, workspace: flags.workspace }, io)),
    );
  withClientOptions(batch.command("logs <name>").description("the logs of one repository's job"))
    .requiredOption("--repo <repository>", "the repository")
    .option("--workspace <dir>", "the workspace, when the repository has several")
    .action((name: string, flags: ClientFlags & { repo: string; workspace?: string }) =>
      withClient(flags, async (client) => (await actions()).logsCommand(client, name, { repository: flags.repo, workspace: flags.workspace }, io)),
    );
  withClientOptions(batch.command("retry <name>").description("run the latest version's entries again (new jobs)"))
    .option("--failed", "only the failed, errored and canceled ones")
    .option("--detach", "return once the jobs are queued")
    .action((name: string, flags: ClientFlags & { failed?: boolean; detach?: boolean }) =>
      withClient(flags, async (client) => (await actions()).retryCommand(client, name, { failed: Boolean(flags.failed), detach: Boolean(flags.detach) }, io)),
    );
  withClientOptions(batch.command("cancel <name>").description("cancel the latest version's unfinished jobs"))
    .action((name: string, flags: ClientFlags) => withClient(flags, async (client) => (await actions()).cancelCommand(client, name, io)));
  withClientOptions(batch.command("apply <name>").description("commit each completed diff on the changeset branch and push it to the repository's origin"))
    .option("--repo <repository...>", "only these repositories")
    .action((name: string, flags: ClientFlags & { repo?: string[] }) =>
      withClient(flags, async (client) => (await actions()).applyCommand(client, name, { repositories: flags.repo }, io)),
    );

  registerBatchLocal(batch, ctx);
  return batch;
}
