/** Unified diffs as `git diff` writes them, parsed into files and hunks for display. */

export type DiffLineKind = "context" | "add" | "del" | "note";

export interface DiffLine {
  kind: DiffLineKind;
  text: string;
  /** Line numbers in the old and new file (null where the line is absent). */
  oldLine: number | null;
  newLine: number | null;
}

export interface DiffHunk {
  header: string;
  lines: DiffLine[];
}

export interface DiffFile {
  oldPath: string | null;
  newPath: string | null;
  /** What happened to the file, as git states it. */
  status: "modified" | "added" | "deleted" | "renamed" | "copied";
  binary: boolean;
  /** Header lines other than ---/+++ (mode changes, similarity...). */
  notes: string[];
  additions: number;
  deletions: number;
  hunks: DiffHunk[];
}

/** The path a file shows under: its new path, or the old one when deleted. */
export function displayPath(file: DiffFile): string {
  if (file.status === "renamed" || file.status === "copied") return `${file.oldPath ?? "?"} → ${file.newPath ?? "?"}`;
  return file.newPath ?? file.oldPath ?? "(unknown)";
}

function unquote(path: string): string {
  if (!path.startsWith('"')) return path;
  try {
    // git C-quotes unusual names; octal escapes are UTF-8 bytes.
    const bytes: number[] = [];
    const body = path.slice(1, -1);
    for (let index = 0; index < body.length; index += 1) {
      const char = body[index] ?? "";
      if (char === "\\") {
        const next = body[index + 1] ?? "";
        if (/[0-7]/.test(next)) {
          bytes.push(parseInt(body.slice(index + 1, index + 4), 8));
          index += 3;
          continue;
        }
        const escapes: Record<string, string> = { n: "\n", t: "\t", '"': '"', "\\": "\\", a: "\x07", b: "\b", f: "\f", r: "\r", v: "\v" };
        for (const byte of new TextEncoder().encode(escapes[next] ?? next)) bytes.push(byte);
        index += 1;
      } else {
        for (const byte of new TextEncoder().encode(char)) bytes.push(byte);
      }
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  } catch {
    return path;
  }
}

/** "a/src/x.ts" -> "src/x.ts"; "/dev/null" -> null. */
function stripPrefix(path: string): string | null {
  const clean = unquote(path.trim());
  if (clean === "/dev/null") return null;
  return clean.replace(/^[ab]\//, "");
}

function fromGitHeader(line: string): { oldPath: string | null; newPath: string | null } {
  const rest = line.slice("diff --git ".length);
  const match = /^(".*?"|\S+) (".*"|\S+)$/.exec(rest) ?? /^a\/(.*) b\/(.*)$/.exec(rest);
  if (!match) return { oldPath: null, newPath: null };
  return { oldPath: stripPrefix(match[1] ?? ""), newPath: stripPrefix(match[2] ?? "") };
}

export function parseDiff(text: string): DiffFile[] {
  const files: DiffFile[] = [];
  let file: DiffFile | undefined;
  let hunk: DiffHunk | undefined;
  let oldLine = 0;
  let newLine = 0;
  let oldLeft = 0;
  let newLeft = 0;
  const start = (paths: { oldPath: string | null; newPath: string | null }): DiffFile => {
    const next: DiffFile = { ...paths, status: "modified", binary: false, notes: [], additions: 0, deletions: 0, hunks: [] };
    files.push(next);
    hunk = undefined;
    oldLeft = 0;
    newLeft = 0;
    return next;
  };
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const line of lines) {
    if (line.startsWith("diff --git ")) {
      file = start(fromGitHeader(line));
      continue;
    }
    // Inside a hunk its header's counts say which lines belong to it, so a removed line that
    // reads "--- x" is not mistaken for a file header.
    if (hunk && file && (oldLeft > 0 || newLeft > 0)) {
      const marker = line[0];
      if (marker === "+") {
        hunk.lines.push({ kind: "add", text: line.slice(1), oldLine: null, newLine: newLine++ });
        file.additions += 1;
        newLeft -= 1;
        continue;
      }
      if (marker === "-") {
        hunk.lines.push({ kind: "del", text: line.slice(1), oldLine: oldLine++, newLine: null });
        file.deletions += 1;
        oldLeft -= 1;
        continue;
      }
      if (marker === " " || line === "") {
        hunk.lines.push({ kind: "context", text: line.slice(1), oldLine: oldLine++, newLine: newLine++ });
        oldLeft -= 1;
        newLeft -= 1;
        continue;
      }
    }
    if (hunk && line.startsWith("\\")) {
      hunk.lines.push({ kind: "note", text: line.slice(1).trim(), oldLine: null, newLine: null });
      continue;
    }
    const range = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
    if (range) {
      file ??= start({ oldPath: null, newPath: null });
      hunk = { header: line, lines: [] };
      file.hunks.push(hunk);
      oldLine = Number(range[1]);
      oldLeft = range[2] === undefined ? 1 : Number(range[2]);
      newLine = Number(range[3]);
      newLeft = range[4] === undefined ? 1 : Number(range[4]);
      continue;
    }
    // A plain unified diff (no "diff --git" line) starts a file at "--- ".
    if (line.startsWith("--- ")) {
      if (!file || file.hunks.length > 0) file = start({ oldPath: null, newPath: null });
      file.oldPath = stripPrefix(line.slice(4).split("\t")[0] ?? "");
      if (file.oldPath === null) file.status = "added";
      continue;
    }
    if (line.startsWith("+++ ") && file) {
      file.newPath = stripPrefix(line.slice(4).split("\t")[0] ?? "");
      if (file.newPath === null) file.status = "deleted";
      continue;
    }
    if (!file) continue;
    if (line.startsWith("new file mode")) file.status = "added";
    else if (line.startsWith("deleted file mode")) file.status = "deleted";
    else if (line.startsWith("rename from ")) {
      file.status = "renamed";
      file.oldPath = unquote(line.slice("rename from ".length));
    } else if (line.startsWith("rename to ")) file.newPath = unquote(line.slice("rename to ".length));
    else if (line.startsWith("copy from ")) {
      file.status = "copied";
      file.oldPath = unquote(line.slice("copy from ".length));
    } else if (line.startsWith("copy to ")) file.newPath = unquote(line.slice("copy to ".length));
    else if (line.startsWith("Binary files ") || line === "GIT binary patch") file.binary = true;
    if (!line.startsWith("index ")) file.notes.push(line);
  }
  for (const parsed of files) {
    if (parsed.status === "added") parsed.oldPath = null;
    if (parsed.status === "deleted") parsed.newPath = null;
  }
  return files;
}
