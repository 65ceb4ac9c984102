/** The web UI's diff parser (web/src/diff.ts) on git's output. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { displayPath, parseDiff } from "../../web/src/diff.ts";

const GIT_DIFF = `diff --git a/src/a.sql b/src/a.sql
index 1111111..2222222 100644
--- a/src/a.sql
+++ b/src/a.sql
@@ -1,3 +1,3 @@
 select 1;
--- a comment that starts with dashes
+-- a new comment
 select 2;
diff --git a/new.txt b/new.txt
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/new.txt
@@ -0,0 +1 @@
+hello
\\ No newline at end of file
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 4444444..0000000
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/old name.txt b/new name.txt
similarity index 100%
rename from old name.txt
rename to new name.txt
diff --git a/logo.png b/logo.png
index 5555555..6666666 100644
Binary files a/logo.png and b/logo.png differ
diff --git "a/caf\\303\\251.txt" "b/caf\\303\\251.txt"
index 7777777..8888888 100644
--- "a/caf\\303\\251.txt"
+++ "b/caf\\303\\251.txt"
@@ -5,2 +5,2 @@ context
-x
+y
 z
`;

describe("parseDiff", () => {
  const files = parseDiff(GIT_DIFF);

  it("finds each file with its status and counts", () => {
    assert.deepEqual(
      files.map((file) => [displayPath(file), file.status, file.additions, file.deletions, file.binary]),
      [
        ["src/a.sql", "modified", 1, 1, false],
        ["new.txt", "added", 1, 0, false],
        ["gone.txt", "deleted", 0, 1, false],
        ["old name.txt → new name.txt", "renamed", 0, 0, false],
        ["logo.png", "modified", 0, 0, true],
        ["café.txt", "modified", 1, 1, false],
      ],
    );
  });

  it("reads hunk lines by the header's counts, with line numbers", () => {
    const lines = files[0]?.hunks[0]?.lines ?? [];
    assert.deepEqual(
      lines.map((line) => [line.kind, line.oldLine, line.newLine, line.text]),
      [
        ["context", 1, 1, "select 1;"],
        ["del", 2, null, "-- a comment that starts with dashes"],
        ["add", null, 2, "-- a new comment"],
        ["context", 3, 3, "select 2;"],
      ],
    );
    assert.deepEqual(files[1]?.hunks[0]?.lines.at(-1), { kind: "note", text: "No newline at end of file", oldLine: null, newLine: null });
    assert.equal(files[5]?.hunks[0]?.lines[0]?.oldLine, 5);
  });

  it("handles an empty diff and a plain unified diff", () => {
    assert.deepEqual(parseDiff(""), []);
    const plain = parseDiff("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n");
    assert.equal(plain.length, 1);
    assert.equal(displayPath(plain[0]!), "x");
    assert.equal(plain[0]?.additions, 1);
  });
});
