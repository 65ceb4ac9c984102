/**
 * The batch benchmark's inputs: many small git repositories (made with real git, a few at a
 * time), their local clones, and the bare figure: a shell loop running the batch's sed over the
 * clones and writing each diff, as someone would by hand.
 */
import { spawn } from "node:child_process";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gitEnv, runChecked } from "../src/common/exec.ts";

export const SED = "sed -i s/foo/bar/g src/a.txt src/b.txt src/c.txt";

/** Runs `work` over `items`, `parallel` at a time. */
export async function pool<T>(items: readonly T[], parallel: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next;
      next += 1;
      await work(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, () => worker()));
}

export function repoName(index: number): string {
  return `bench/r${String(index).padStart(3, "0")}`;
}

/** One small repository: 4 files, 3 of which hold "foo" (so every repository gets a diff). */
export function repoFiles(index: number): Record<string, string> {
  return {
    "README.md": `# repository ${index}\n\nA small repository for the batch benchmark.\n`,
    "src/a.txt": `foo ${index}\nsecond line\n`,
    "src/b.txt": `one foo, two foo\nthird line\n`,
    "src/c.txt": `no match here\n`,
  };
}

/** Makes `count` repositories under `root`/sources, and a clone of each under `root`/clones. */
export async function makeRepositories(root: string, count: number, hostPath: string): Promise<{ sources: string[]; clones: string }> {
  const env = gitEnv({ PATH: hostPath });
  const sources = Array.from({ length: count }, (_, index) => join(root, "sources", `r${String(index).padStart(3, "0")}`));
  const clones = join(root, "clones");
  await mkdir(clones, { recursive: true });
  await pool(sources, 4, async (dir, index) => {
    await mkdir(join(dir, "src"), { recursive: true });
    for (const [path, content] of Object.entries(repoFiles(index))) await writeFile(join(dir, path), content);
    await runChecked("git", ["init", "--quiet", "--initial-branch=main"], { cwd: dir, env });
    await runChecked("git", ["add", "."], { cwd: dir, env });
    await runChecked("git", ["-c", "user.name=Bench", "-c", "user.email=bench@airlock.invalid", "commit", "--quiet", "-m", "initial"], { cwd: dir, env });
    await runChecked("git", ["clone", "--quiet", dir, join(clones, `r${String(index).padStart(3, "0")}`)], { cwd: root, env });
  });
  return { sources, clones };
}

/**
 * The bare figure: one /bin/sh loop over the clones, each `sed` then `git diff` into a file, then
 * the clones reset for the next round (not timed). Resolves with the loop's wall time in ms.
 */
export async function bareLoop(clones: string, diffs: string, hostPath: string): Promise<number> {
  await mkdir(diffs, { recursive: true });
  const script = `for d in "$1"/*; do (cd "$d" && ${SED} && git diff > "$2/$(basename "$d").diff"); done`;
  const started = performance.now();
  await sh(script, [clones, diffs], hostPath);
  const elapsed = performance.now() - started;
  await sh(`for d in "$1"/*; do git -C "$d" checkout --quiet -- .; done`, [clones], hostPath);
  return elapsed;
}

/** The same loop, but each repository cloned first (what getting a repository at a commit costs). */
export async function bareLoopWithClone(sources: string, work: string, hostPath: string): Promise<number> {
  await mkdir(work, { recursive: true });
  const script = `for s in "$1"/*; do d="$2/$(basename "$s")"; git clone --quiet "$s" "$d" && (cd "$d" && ${SED} && git diff > "$d.diff"); done`;
  const started = performance.now();
  await sh(script, [sources, work], hostPath);
  return performance.now() - started;
}

/** Counts the non-empty diff files a loop wrote. */
export async function countDiffs(dir: string): Promise<number> {
  return (await readdir(dir)).filter((name) => name.endsWith(".diff")).length;
}

function sh(script: string, args: string[], hostPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", script, "sh", ...args], { env: gitEnv({ PATH: hostPath }), stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`loop exited ${code}: ${stderr.slice(0, 400)}`))));
  });
}
