/** A published pure-Python package's sources, as a repository of them would hold them (tests). */
import assert from "node:assert/strict";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { run, runChecked } from "../../src/common/exec.ts";
import { baseEnv } from "./cluster.ts";

/** toml: five modules, no dependencies; encoder.py imports InlineTableDict from decoder.py. */
export const PYTHON_PACKAGE = { name: "toml", version: "0.10.2" } as const;

/**
 * Downloads the package with the host's pip, as this machine's pip is configured (PyPI or its
 * mirror): the source distribution, or else the pure-Python wheel (the same .py files). Returns
 * the package's .py files and a pyproject.toml naming it, or why it could not be had.
 */
export async function pythonSources(dir: string): Promise<{ files: Record<string, string>; from: string } | { missing: string }> {
  await mkdir(dir, { recursive: true });
  const spec = `${PYTHON_PACKAGE.name}==${PYTHON_PACKAGE.version}`;
  const env = { ...baseEnv, PIP_DISABLE_PIP_VERSION_CHECK: "1", PIP_NO_INPUT: "1" };
  const pip = (...args: string[]) => run("python3", ["-m", "pip", "download", "--no-deps", "--quiet", "-d", dir, ...args, spec], { env, signal: AbortSignal.timeout(120_000) });
  let result = await pip("--no-binary", ":all:");
  let kind = "source distribution";
  if (result.code !== 0) {
    result = await pip("--only-binary", ":all:");
    kind = "wheel";
  }
  if (result.code !== 0) return { missing: `pip download ${spec} failed: ${result.stderr.trim().split("\n").pop()}` };
  const archive = (await readdir(dir)).find((name) => name.endsWith(".tar.gz") || name.endsWith(".whl"));
  assert.ok(archive, "pip wrote the package");
  const out = join(dir, "unpacked");
  await mkdir(out);
  if (archive.endsWith(".whl")) await runChecked("python3", ["-m", "zipfile", "-e", join(dir, archive), out], { env });
  else await runChecked("tar", ["-xzf", join(dir, archive), "-C", out, "--strip-components=1"], { env });
  const files: Record<string, string> = {};
  for (const name of await readdir(join(out, PYTHON_PACKAGE.name))) {
    if (name.endsWith(".py")) files[`${PYTHON_PACKAGE.name}/${name}`] = await readFile(join(out, PYTHON_PACKAGE.name, name), "utf8");
  }
  // The project file a repository of it would have (the wheel carries none; the sdist a setup.py).
  files["pyproject.toml"] = [
    "[build-system]",
    'requires = ["setuptools"]',
    'build-backend = "setuptools.build_meta"',
    "",
    "[project]",
    `name = "${PYTHON_PACKAGE.name}"`,
    `version = "${PYTHON_PACKAGE.version}"`,
    "",
    "[tool.setuptools]",
    `packages = ["${PYTHON_PACKAGE.name}"]`,
    "",
  ].join("\n");
  return { files, from: `${archive} (${kind})` };
}
