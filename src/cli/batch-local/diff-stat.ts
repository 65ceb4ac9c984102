/** Files changed and lines added/deleted in a `git diff`: the protocol's summary, counts only. */
import { summarizeDiff } from "../../protocol/index.ts";

export interface DiffStat {
  files: number;
  added: number;
  deleted: number;
}

export function diffStat(diff: Buffer | string): DiffStat {
  const { files, added, deleted } = summarizeDiff(typeof diff === "string" ? diff : diff.toString("utf8"));
  return { files, added, deleted };
}
