/**
 * Python project roots and their indexing steps (docs/indexing.md): a directory with a
 * pyproject.toml or setup.py, or a requirements.txt outside any such directory. Dependencies are
 * installed by pip into the job's own user site in the workspace (PYTHONUSERBASE), where
 * scip-python finds them through `pip3 list`.
 */
import type { JobSpecInput } from "../protocol/index.ts";
import { ignored, join, parentOf, within } from "./paths.ts";

/** The indexer the Python image holds (scripts/test-images.sh pins the same version). */
export const SCIP_PYTHON = { name: "scip-python", version: "0.6.6", image: "airlock-test/python-indexer" } as const;

const MANIFESTS = ["pyproject.toml", "setup.py"];
/** Each step's first command: the root's own user site, so `pip3 install --user` and `pip3 list` agree. */
const USER_SITE = 'export PYTHONUSERBASE="$PWD/.airlock-python" PATH="$PWD/.airlock-python/bin:$PATH"';
/** A copy of the root to build the project from, in the step's /tmp: `$src`. */
export const PYTHON_COPY = 'src=$(mktemp -d) && cp -R . "$src"';
const COPY = PYTHON_COPY;
const PIP_ENV = { PIP_DISABLE_PIP_VERSION_CHECK: "1", PIP_NO_INPUT: "1", PIP_ROOT_USER_ACTION: "ignore" };
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function pythonRoots(files: readonly string[]): string[] {
  const visible = files.filter((path) => !ignored(path));
  const dirsWith = (names: string[]): string[] => [...new Set(visible.filter((path) => names.some((name) => path === name || path.endsWith(`/${name}`))).map(parentOf))];
  const projects = dirsWith(MANIFESTS);
  // A requirements.txt inside a project (docs/requirements.txt) belongs to that project.
  const loose = dirsWith(["requirements.txt"]).filter((dir) => !projects.some((project) => within(dir, project)));
  return [...projects, ...loose].sort();
}

/** The project's name from pyproject.toml's [project] table, for the symbols' package name. */
export function pythonProjectName(pyproject: string | undefined, root: string, repository: string): string {
  const table = pyproject?.split(/^\[/m).find((section) => section.startsWith("project]"));
  const name = table?.match(/^name\s*=\s*["']([^"']+)["']/m)?.[1];
  if (name && NAME.test(name)) return name;
  const fallback = (root === "." ? repository.split("/").pop() : root.split("/").pop()) ?? "project";
  return NAME.test(fallback) ? fallback : "project";
}

export function pythonSteps(
  files: ReadonlySet<string>,
  root: string,
  options: { image: string; install: string[] | undefined; index: string[] | undefined; name: string; version: string; output: string },
): JobSpecInput["steps"] {
  const defaults: string[] = [];
  if (files.has(join(root, "requirements.txt"))) defaults.push("pip3 install --user --no-warn-script-location -r requirements.txt");
  // Built from a copy: setuptools leaves build/ and *.egg-info in the tree it builds, which the
  // indexer would then index as sources.
  if (MANIFESTS.some((name) => files.has(join(root, name)))) defaults.push(`${COPY} && pip3 install --user --no-warn-script-location "$src"`);
  const install = options.install ?? defaults;
  const index = options.index ?? [`scip-python index . --project-name ${options.name} --project-version ${options.version} --output ${options.output}`];
  return [
    ...(install.length > 0 ? [{ key: "install", image: options.image, dir: root, env: PIP_ENV, commands: [USER_SITE, ...install] }] : []),
    { key: "index", image: options.image, dir: root, env: PIP_ENV, commands: [USER_SITE, ...index] },
  ];
}
