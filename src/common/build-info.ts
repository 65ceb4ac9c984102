/**
 * What build this process runs: the release, the executor protocol, and the git commit when one
 * is known. `npm run build` records the commit in dist/build-info.json (scripts/build-info.ts;
 * AIRLOCK_GIT_COMMIT overrides it where the build has no .git, as in an image build). Run from a
 * checkout, the commit is the checkout's HEAD. Otherwise there is none, and nothing claims one.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AIRLOCK_VERSION, PROTOCOL_VERSION } from "../protocol/index.ts";

export interface BuildInfo {
  version: string;
  protocolVersion: number;
  /** Full git commit id, or undefined when not known. */
  commit: string | undefined;
  /** Whether the working tree had uncommitted changes when the commit was read. */
  dirty: boolean;
}

/** src/ when run from sources, dist/ when run from a build: build-info.json sits at its root. */
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  cached ??= { version: AIRLOCK_VERSION, protocolVersion: PROTOCOL_VERSION, ...(recordedCommit() ?? checkoutCommit() ?? { commit: undefined, dirty: false }) };
  return cached;
}

/** "0.1.0+3f2a1bc09d12" (semver build metadata), or the bare release when no commit is known. */
export function versionLabel(info: BuildInfo = buildInfo()): string {
  return info.commit ? `${info.version}+${info.commit.slice(0, 12)}${info.dirty ? ".dirty" : ""}` : info.version;
}

function recordedCommit(): { commit: string | undefined; dirty: boolean } | undefined {
  const path = `${ROOT}build-info.json`;
  if (!existsSync(path)) return undefined;
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as { commit?: unknown; dirty?: unknown };
    return { commit: typeof parsed.commit === "string" && /^[0-9a-f]{7,64}$/.test(parsed.commit) ? parsed.commit : undefined, dirty: parsed.dirty === true };
  } catch {
    return undefined;
  }
}

function checkoutCommit(): { commit: string; dirty: boolean } | undefined {
  if (!existsSync(`${ROOT}.git`)) return undefined;
  return readGitCommit(ROOT);
}

/** HEAD of the checkout at `dir` and whether it has uncommitted changes; undefined without git. */
export function readGitCommit(dir: string): { commit: string; dirty: boolean } | undefined {
  try {
    const git = (args: string[]): string => execFileSync("git", ["-C", dir, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 }).trim();
    const commit = git(["rev-parse", "HEAD"]);
    if (!/^[0-9a-f]{40,64}$/.test(commit)) return undefined;
    return { commit, dirty: git(["status", "--porcelain", "--untracked-files=no"]) !== "" };
  } catch {
    return undefined;
  }
}
