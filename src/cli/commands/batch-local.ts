/**
 * `airlock batch run SPEC.yaml --local`: registered on the `batch` command (registration only;
 * the implementation, in src/cli/batch-local/, is loaded when the command runs).
 */
import { Option, type Command } from "commander";
import { ValidationError } from "../../protocol/index.ts";
import type { ClientFlags } from "../context.ts";
import type { BatchCommandContext } from "./batch.ts";

export function registerBatchLocal(batch: Command, ctx: BatchCommandContext): void {
  ctx
    .withClientOptions(
      batch
        .command("run <spec>")
        .description("run a batch spec on this machine (--local): the steps in sandboxes here, N repositories at once; the results are uploaded as a new version of the batch"),
    )
    .option("--local", "run here rather than on executors (required: `airlock batch preview` runs on executors)")
    .addOption(new Option("--runtime <name>", "sandbox: shell, bwrap, docker, gvisor, microvm, or auto (env AIRLOCK_RUNTIME; default auto: the strongest usable)"))
    .option("-j, --jobs <n>", "repositories (or workspaces) run at once (env AIRLOCK_LOCAL_JOBS; default 4)")
    .option("--no-upload", "keep the results here: write each diff (and log, and results.json) under --out")
    .option("--out <dir>", "with --no-upload: where the results go (default ./batch-results)")
    .option("--work-dir <dir>", "image caches and workspaces (env AIRLOCK_LOCAL_DATA; default ./.airlock-local)")
    .option("--images <paths>", "OCI image layouts, OCI archives, or dirs holding layouts, comma-separated, for bwrap and microvm (env AIRLOCK_IMAGES)")
    .option("--docker-host <socket>", "Docker Engine socket for docker and gvisor (env DOCKER_HOST; default unix:///var/run/docker.sock)")
    .option("--gvisor-runtime <name>", "name runsc is registered under in dockerd (env AIRLOCK_GVISOR_RUNTIME; default runsc)")
    .option("--default-image <image>", "image for steps that name none (env AIRLOCK_DEFAULT_IMAGE; default alpine:3)")
    .addOption(new Option("--log-level <level>", "diagnostics on stderr (env AIRLOCK_LOG_LEVEL; default warn)").choices(["debug", "info", "warn", "error", "silent"]))
    .action((file: string, flags: ClientFlags & Record<string, unknown>) =>
      ctx.run(async () => {
        if (!flags.local) throw new ValidationError("`airlock batch run` runs the spec on this machine: pass --local (to run it on executors, use `airlock batch preview`)");
        return (await import("../batch-local/run.ts")).batchRunLocalCommand(file, flags, ctx.io);
      }),
    );
}
