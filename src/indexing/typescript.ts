/**
 * TypeScript and JavaScript project roots and their indexing steps (docs/indexing.md): a
 * package.json with a tsconfig.json or jsconfig.json beside it; the package manager from the
 * nearest lockfile at or above the root.
 */
import type { JobSpecInput } from "../protocol/index.ts";
import { ignored, join, parentOf, upTo } from "./paths.ts";
import type { SourceTree } from "./tree.ts";

/** The indexer the default image holds (scripts/test-images.sh pins the same version). */
export const SCIP_TYPESCRIPT = { name: "scip-typescript", version: "0.4.0", image: "airlock-test/node-indexer" } as const;
/** The image's CA bundle is the host's, which may hold a private mirror's CA: Node reads it only when told. */
const NODE_ENV = { NODE_EXTRA_CA_CERTS: "/etc/ssl/certs/ca-certificates.crt" };

export type PackageManager = "npm" | "yarn" | "pnpm";

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

/** The package manager and the directory to install in: the nearest lockfile at or above `root`. */
export function packageManager(files: ReadonlySet<string>, root: string): { manager: PackageManager; dir: string; locked: boolean } {
  for (let dir = root; ; dir = parentOf(dir)) {
    for (const [name, manager] of LOCKFILES) if (files.has(join(dir, name))) return { manager, dir, locked: true };
    if (dir === ".") return { manager: "npm", dir: root, locked: false };
  }
}

export function typescriptSteps(
  files: ReadonlySet<string>,
  root: string,
  options: { image: string; install: string[] | undefined; index: string[] | undefined; output: string },
): JobSpecInput["steps"] {
  const found = packageManager(files, root);
  // Install where the lockfile is (a monorepo's top), from the root's directory.
  const cd = found.dir === root ? "" : `cd ${upTo(root, found.dir)} && `;
  const commands = options.install ?? (files.has(join(root, "package.json")) || found.locked ? [`${cd}${INSTALL[found.manager](found.locked)}`] : []);
  const inferTsconfig = !files.has(join(root, "tsconfig.json"));
  const index = options.index ?? [`scip-typescript index --output ${options.output}${inferTsconfig ? " --infer-tsconfig" : ""}`];
  const { image } = options;
  return [
    // The executor lends the install its verified npm tarballs (docs/indexing.md).
    ...(commands.length > 0 ? [{ key: "install", cache: "npm" as const, image, dir: root, env: NODE_ENV, commands }] : []),
    { key: "index", image, dir: root, env: NODE_ENV, commands: index },
  ];
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
