/**
 * `airlock batch run SPEC.yaml --local`: registered on the `batch` command. Placeholder: the
 * local mode's owner fills this in (see src/cli/batch-local/).
 */
import type { Command } from "commander";
import type { BatchCommandContext } from "./batch.ts";

export function registerBatchLocal(batch: Command, ctx: BatchCommandContext): void {
  void batch;
  void ctx;
}
