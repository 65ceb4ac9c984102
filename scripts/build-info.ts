/**
 * Records what was built into dist/build-info.json (read by src/common/build-info.ts): the git
 * commit of the checkout, or AIRLOCK_GIT_COMMIT where the build has no .git (an image build).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { readGitCommit } from "../src/common/build-info.ts";

const given = process.env.AIRLOCK_GIT_COMMIT?.trim();
if (given && !/^[0-9a-f]{7,64}$/.test(given)) {
  process.stderr.write(`AIRLOCK_GIT_COMMIT: "${given}" is not a git commit id\n`);
  process.exit(2);
}
const found = given ? { commit: given, dirty: false } : readGitCommit(new URL("..", import.meta.url).pathname);
mkdirSync("dist", { recursive: true });
writeFileSync("dist/build-info.json", `${JSON.stringify({ commit: found?.commit ?? null, dirty: found?.dirty ?? false, builtAt: new Date().toISOString() }, null, 2)}\n`);
