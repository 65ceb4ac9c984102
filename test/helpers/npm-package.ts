/** A published npm package's TypeScript sources, as a repository of them would hold them (tests, bench/index.bench.ts). */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { runChecked } from "../../src/common/exec.ts";
import { baseEnv } from "./cluster.ts";

/** immer ships its sources (src/**.ts, 15 files) and has no runtime dependencies. */
export const PACKAGE = "immer@10.1.1";

/** The package's files as published, with its package.json cut to what indexing needs. */
export async function publishedSources(dir: string, spec = PACKAGE): Promise<Record<string, string>> {
  await mkdir(dir, { recursive: true });
  // The host's CA bundle may hold this machine's mirror's CA, which Node reads only when told.
  const ca = process.env.NODE_EXTRA_CA_CERTS ?? "/etc/ssl/certs/ca-certificates.crt";
  const env = { ...baseEnv, npm_config_cache: join(dir, "npm-cache"), ...(existsSync(ca) ? { NODE_EXTRA_CA_CERTS: ca } : {}) };
  await runChecked("npm", ["pack", spec, "--silent", "--pack-destination", dir], { cwd: dir, env });
  const tarball = (await readdir(dir)).find((name) => name.endsWith(".tgz"));
  assert.ok(tarball, "npm pack wrote a tarball");
  await runChecked("tar", ["-xzf", tarball, "-C", dir], { cwd: dir, env: baseEnv });
  const files: Record<string, string> = {};
  const walk = async (sub: string): Promise<void> => {
    for (const entry of await readdir(join(dir, "package", sub), { withFileTypes: true })) {
      const path = sub ? `${sub}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(path);
      else if (path.startsWith("src/")) files[path] = await readFile(join(dir, "package", path), "utf8");
    }
  };
  await walk("");
  // Its scripts and devDependencies are the maintainers' build and test tools (tsup, jest, ...).
  const manifest = JSON.parse(await readFile(join(dir, "package", "package.json"), "utf8")) as Record<string, unknown>;
  files["package.json"] = JSON.stringify({ name: manifest.name, version: manifest.version, dependencies: manifest.dependencies ?? {} }, null, 2);
  // It publishes no tsconfig.json: the one a project like it would have.
  files["tsconfig.json"] = JSON.stringify({ compilerOptions: { target: "es2020", module: "esnext", moduleResolution: "bundler", strict: true, noEmit: true }, include: ["src"] });
  return files;
}

