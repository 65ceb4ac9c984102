/** Files changed and lines added/deleted in a `git diff` (hunk headers bound what counts as a line). */

export interface DiffStat {
  files: number;
  added: number;
  deleted: number;
}

export function diffStat(diff: Buffer | string): DiffStat {
  const text = typeof diff === "string" ? diff : diff.toString("utf8");
  const stat: DiffStat = { files: 0, added: 0, deleted: 0 };
  let oldLeft = 0;
  let newLeft = 0;
  for (const line of text.split("\n")) {
    if (oldLeft > 0 || newLeft > 0) {
      const marker = line[0];
      if (marker === "+") {
        stat.added += 1;
        newLeft -= 1;
        continue;
      }
      if (marker === "-") {
        stat.deleted += 1;
        oldLeft -= 1;
        continue;
      }
      if (marker === " ") {
        oldLeft -= 1;
        newLeft -= 1;
        continue;
      }
      if (marker === "\\") continue;
    }
    if (line.startsWith("diff --git ")) {
      stat.files += 1;
      oldLeft = 0;
      newLeft = 0;
      continue;
    }
    const range = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(line);
    if (range) {
      oldLeft = range[1] === undefined ? 1 : Number(range[1]);
      newLeft = range[2] === undefined ? 1 : Number(range[2]);
    }
  }
  return stat;
}
