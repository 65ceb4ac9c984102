/**
 * Inference of indexing jobs from a repository's files (docs/indexing.md): TypeScript and
 * JavaScript project roots (a package.json with a tsconfig.json or jsconfig.json beside it), the
 * package manager from the nearest lockfile at or above the root, one job per root; or the roots
 * `airlock-index.yaml` names. Pure: reads the tree, returns job specs.
 */
import { parse as parseYaml } from "yaml";
import { INDEX_OVERRIDE_FILE, IndexOverride, JobSpecInput, validationErrorFrom, ValidationError, type JobSpec } from "../protocol/index.ts";
import type { SourceTree } from "./tree.ts";

/** The indexer the default image holds (scripts/test-images.sh pins the same version). */
export const SCIP_TYPESCRIPT = { name: "scip-typescript", version: "0.4.0", image: "airlock-test/node-indexer" } as const;
export const INDEX_FILE = "index.scip";
/** The image's CA bundle is the host's, which may hold a private mirror's CA: Node reads it only when told. */
const NODE_ENV = { NODE_EXTRA_CA_CERTS: "/etc/ssl/certs/ca-certificates.crt" };

export type PackageManager = "npm" | "yarn" | "pnpm";

export interface IndexPlan {
  root: string;
  indexer: string;
  indexerVersion: string;
  source: "inferred" | "override";
  /** The artifact the job uploads: the root's index.scip. */
  artifact: string;
  spec: JobSpec;
}

export interface InferOptions {
  repository: string;
  commit: string;
  queue?: string | undefined;
  image?: string | undefined;
}

const LOCKFILES: [string, PackageManager][] = [
  ["pnpm-lock.yaml", "pnpm"],
  ["yarn.lock", "yarn"],
  ["package-lock.json", "npm"],
  ["npm-shrinkwrap.json", "npm"],
];

const INSTALL: Record<PackageManager, (locked: boolean) => string> = {
  npm: (locked) => (locked ? "npm ci --no-audit --no-fund" : "npm install --no-audit --no-fund"),
  yarn: () => "npx --yes yarn@1.22.22 install --frozen-lockfile --non-interactive",
  pnpm: () => "npx --yes pnpm@9.15.0 install --frozen-lockfile",
};

const parentOf = (dir: string): string => (dir.includes("/") ? dir.slice(0, dir.lastIndexOf("/")) : ".");
const join = (dir: string, name: string): string => (dir === "." ? name : `${dir}/${name}`);
const ignored = (path: string): boolean => path.split("/").some((part) => part === "node_modules" || part === ".git");

/** The package manager and the directory to install in: the nearest lockfile at or above `root`. */
export function packageManager(files: ReadonlySet<string>, root: string): { manager: PackageManager; dir: string; locked: boolean } {
  for (let dir = root; ; dir = parentOf(dir)) {
    for (const [name, manager] of LOCKFILES) if (files.has(join(dir, name))) return { manager, dir, locked: true };
    if (dir === ".") return { manager: "npm", dir: root, locked: false };
  }
}

/** The path from `dir` up to its ancestor `ancestor` ("../.."). */
function upTo(dir: string, ancestor: string): string {
  const depth = (path: string): number => (path === "." ? 0 : path.split("/").length);
  return Array<string>(depth(dir) - depth(ancestor)).fill("..").join("/");
}

function typescriptSteps(files: ReadonlySet<string>, root: string, image: string, install: string[] | undefined): JobSpecInput["steps"] {
  const found = packageManager(files, root);
  // Install where the lockfile is (a monorepo's top), from the root's directory.
  const cd = found.dir === root ? "" : `cd ${upTo(root, found.dir)} && `;
  const commands = install ?? (files.has(join(root, "package.json")) || found.locked ? [`${cd}${INSTALL[found.manager](found.locked)}`] : []);
  const inferTsconfig = !files.has(join(root, "tsconfig.json"));
  const index = `scip-typescript index --output ${INDEX_FILE}${inferTsconfig ? " --infer-tsconfig" : ""}`;
  return [
    ...(commands.length > 0 ? [{ key: "install", image, dir: root, env: NODE_ENV, commands }] : []),
    { key: "index", image, dir: root, env: NODE_ENV, commands: [index] },
  ];
}

function jobSpec(options: InferOptions, steps: JobSpecInput["steps"], artifact: string): JobSpec {
  const parsed = JobSpecInput.safeParse({
    queue: options.queue ?? "default",
    repository: options.repository,
    commit: options.commit,
    network: "internet",
    maxAttempts: 1,
    steps,
    outputs: { paths: [artifact] },
  });
  if (!parsed.success) throw validationErrorFrom(parsed.error, `invalid ${INDEX_OVERRIDE_FILE}`);
  return parsed.data;
}

/** Roots: directories with a package.json and a tsconfig.json or jsconfig.json (not node_modules). */
export async function typescriptRoots(tree: SourceTree, files: readonly string[]): Promise<{ roots: string[]; packages: string[] }> {
  const set = new Set(files);
  const packages = files.filter((path) => !ignored(path) && (path === "package.json" || path.endsWith("/package.json"))).map(parentOf);
  let roots = packages.filter((dir) => set.has(join(dir, "tsconfig.json")) || set.has(join(dir, "jsconfig.json")));
  // A workspace top whose packages are roots is their shared base, not a project of its own.
  const tops: string[] = [];
  for (const dir of roots) {
    const manifest = await tree.read(join(dir, "package.json"));
    let workspaces = false;
    try {
      workspaces = manifest !== undefined && (JSON.parse(manifest) as { workspaces?: unknown }).workspaces !== undefined;
    } catch {
      // an unreadable package.json: still a root; its install will say what is wrong
    }
    if (workspaces || set.has(join(dir, "pnpm-workspace.yaml"))) tops.push(dir);
  }
  roots = roots.filter((dir) => !tops.includes(dir) || !roots.some((other) => other !== dir && (dir === "." || other.startsWith(`${dir}/`))));
  return { roots, packages };
}

async function readOverride(tree: SourceTree): Promise<IndexOverride | undefined> {
  const text = await tree.read(INDEX_OVERRIDE_FILE);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = parseYaml(text) as unknown;
  } catch (error) {
    throw new ValidationError(`${INDEX_OVERRIDE_FILE} is not valid YAML: ${(error as Error).message}`, { field: INDEX_OVERRIDE_FILE });
  }
  const parsed = IndexOverride.safeParse(value);
  if (!parsed.success) throw validationErrorFrom(parsed.error, `invalid ${INDEX_OVERRIDE_FILE}`);
  return parsed.data;
}

/** The indexing jobs for a tree; a ValidationError starting "nothing to index" says why there are none. */
export async function inferIndexPlans(tree: SourceTree, options: InferOptions): Promise<IndexPlan[]> {
  const files = await tree.files();
  const set = new Set(files);
  const override = await readOverride(tree);
  const image = options.image ?? SCIP_TYPESCRIPT.image;
  if (override) {
    return override.roots.map((root) => {
      const rootImage = root.image ?? override.image ?? image;
      const artifact = join(root.path, INDEX_FILE);
      const steps = typescriptSteps(set, root.path, rootImage, root.install);
      const withIndex = root.index ? steps.map((step) => (step.key === "index" ? { ...step, commands: root.index as string[] } : step)) : steps;
      const indexer = root.indexer ?? (root.index ? { name: "custom", version: "unknown" } : SCIP_TYPESCRIPT);
      return { root: root.path, indexer: indexer.name, indexerVersion: indexer.version, source: "override", artifact, spec: jobSpec(options, withIndex, artifact) };
    });
  }
  const { roots, packages } = await typescriptRoots(tree, files);
  if (roots.length === 0) {
    const why =
      packages.length === 0
        ? "it has no package.json (TypeScript/JavaScript projects are found by a package.json with a tsconfig.json or jsconfig.json beside it)"
        : `none of its package.json files (${packages.slice(0, 5).map((dir) => join(dir, "package.json")).join(", ")}${packages.length > 5 ? ", ..." : ""}) has a tsconfig.json or jsconfig.json beside it`;
    throw new ValidationError(`nothing to index in ${options.repository} at ${options.commit.slice(0, 12)}: ${why}; add ${INDEX_OVERRIDE_FILE} to name roots yourself`);
  }
  return roots.map((root) => {
    const artifact = join(root, INDEX_FILE);
    return { root, indexer: SCIP_TYPESCRIPT.name, indexerVersion: SCIP_TYPESCRIPT.version, source: "inferred", artifact, spec: jobSpec(options, typescriptSteps(set, root, image, undefined), artifact) };
  });
}
