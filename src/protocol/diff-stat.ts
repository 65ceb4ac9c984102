/**
 * What a `git diff` changes: files and lines added/deleted (hunk headers bound what counts as a
 * line), and the changed paths by kind. Pure (no imports), for the coordinator, the CLI and the UI.
 */

export interface DiffSummary {
  files: number;
  added: number;
  deleted: number;
  /** Repository-relative paths, as `git diff --name-status --no-renames` would sort them out. */
  modifiedFiles: string[];
  addedFiles: string[];
  deletedFiles: string[];
}

/** The path in a "diff --git a/x b/x" header (quoted paths unquoted). */
function headerPath(line: string): string {
  const rest = line.slice("diff --git ".length);
  if (rest.startsWith('"')) {
    const parts = rest.match(/"((?:[^"\\]|\\.)*)"/g) ?? [];
    const last = parts[parts.length - 1] ?? "";
    const unquoted = JSON.parse(last.replace(/\\([0-7]{3})/g, (_m, octal: string) => `\\u00${parseInt(octal, 8).toString(16).padStart(2, "0")}`)) as string;
    return unquoted.replace(/^b\//, "");
  }
  const half = Math.floor((rest.length - 1) / 2);
  const right = rest.slice(half + 1);
  return right.replace(/^b\//, "");
}

export function summarizeDiff(diff: string): DiffSummary {
  const summary: DiffSummary = { files: 0, added: 0, deleted: 0, modifiedFiles: [], addedFiles: [], deletedFiles: [] };
  let oldLeft = 0;
  let newLeft = 0;
  let path: string | undefined;
  let kind: "modified" | "added" | "deleted" = "modified";
  const flush = (): void => {
    if (path === undefined) return;
    (kind === "added" ? summary.addedFiles : kind === "deleted" ? summary.deletedFiles : summary.modifiedFiles).push(path);
  };
  for (const line of diff.split("\n")) {
    if (oldLeft > 0 || newLeft > 0) {
      const marker = line[0];
      if (marker === "+") {
        summary.added += 1;
        newLeft -= 1;
        continue;
      }
      if (marker === "-") {
        summary.deleted += 1;
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
      flush();
      summary.files += 1;
      oldLeft = 0;
      newLeft = 0;
      path = headerPath(line);
      kind = "modified";
      continue;
    }
    if (line.startsWith("new file mode")) kind = "added";
    else if (line.startsWith("deleted file mode")) kind = "deleted";
    const range = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(line);
    if (range) {
      oldLeft = range[1] === undefined ? 1 : Number(range[1]);
      newLeft = range[2] === undefined ? 1 : Number(range[2]);
    }
  }
  flush();
  return summary;
}
