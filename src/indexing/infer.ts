/**
 * Inference of indexing jobs from a repository's files (docs/indexing.md): TypeScript/JavaScript
 * roots (typescript.ts) and Python roots (python.ts), one job per root; or the roots an override
 * names. An override is the coordinator's for the repository when it holds one, else the tree's
 * `airlock-index.yaml`. Pure: reads the tree, returns job specs.
 */
import { parse as parseYaml } from "yaml";
import { INDEX_OVERRIDE_FILE, IndexOverride, JobSpecInput, validationErrorFrom, ValidationError, type JobSpec } from "../protocol/index.ts";
import { join } from "./paths.ts";
import { pythonProjectName, pythonRoots, pythonSteps, SCIP_PYTHON } from "./python.ts";
import type { SourceTree } from "./tree.ts";
import { SCIP_TYPESCRIPT, typescriptRoots, typescriptSteps } from "./typescript.ts";

export const INDEX_FILE = "index.scip";

export type IndexLanguage = "typescript" | "python";

export interface IndexPlan {
  root: string;
  language: IndexLanguage;
  indexer: string;
  indexerVersion: string;
  /** Where the roots came from: inference, the tree's airlock-index.yaml, or the coordinator's override. */
  source: "inferred" | "override" | "coordinator";
  /** The artifact the job uploads: the root's index.scip. */
  artifact: string;
  spec: JobSpec;
}

export interface InferOptions {
  repository: string;
  commit: string;
  queue?: string | undefined;
  /** The image of TypeScript roots (default SCIP_TYPESCRIPT.image). */
  image?: string | undefined;
  /** The coordinator's override for this repository (YAML text); it takes the tree's file's place. */
  override?: string | undefined;
}

/** Parses override text (the tree's file or the coordinator's), naming what is wrong. */
export function parseIndexOverride(text: string, origin: string): IndexOverride {
  let value: unknown;
  try {
    value = parseYaml(text) as unknown;
  } catch (error) {
    throw new ValidationError(`${origin} is not valid YAML: ${(error as Error).message}`, { field: INDEX_OVERRIDE_FILE });
  }
  const parsed = IndexOverride.safeParse(value);
  if (!parsed.success) throw validationErrorFrom(parsed.error, `invalid ${origin}`);
  return parsed.data;
}

function jobSpec(options: InferOptions, steps: JobSpecInput["steps"], artifact: string, origin: string): JobSpec {
  const parsed = JobSpecInput.safeParse({
    queue: options.queue ?? "default",
    repository: options.repository,
    commit: options.commit,
    network: "internet",
    maxAttempts: 1,
    steps,
    outputs: { paths: [artifact] },
  });
  if (!parsed.success) throw validationErrorFrom(parsed.error, `invalid ${origin}`);
  return parsed.data;
}

interface RootChoice {
  root: string;
  language: IndexLanguage;
  image?: string | undefined;
  install?: string[] | undefined;
  index?: string[] | undefined;
  indexer?: { name: string; version: string } | undefined;
}

function plan(files: ReadonlySet<string>, pyprojects: Map<string, string | undefined>, options: InferOptions, choice: RootChoice, source: IndexPlan["source"]): IndexPlan {
  const artifact = join(choice.root, INDEX_FILE);
  const origin = source === "coordinator" ? "index config of the repository" : source === "override" ? INDEX_OVERRIDE_FILE : "inferred index job";
  const defaults = choice.language === "python" ? SCIP_PYTHON : SCIP_TYPESCRIPT;
  const image = choice.image ?? (choice.language === "python" ? SCIP_PYTHON.image : (options.image ?? SCIP_TYPESCRIPT.image));
  const steps =
    choice.language === "python"
      ? pythonSteps(files, choice.root, {
          image,
          install: choice.install,
          index: choice.index,
          name: pythonProjectName(pyprojects.get(choice.root), choice.root, options.repository),
          version: options.commit.slice(0, 12),
          output: INDEX_FILE,
        })
      : typescriptSteps(files, choice.root, { image, install: choice.install, index: choice.index, output: INDEX_FILE });
  const indexer = choice.indexer ?? (choice.index ? { name: "custom", version: "unknown" } : defaults);
  return { root: choice.root, language: choice.language, indexer: indexer.name, indexerVersion: indexer.version, source, artifact, spec: jobSpec(options, steps, artifact, origin) };
}

/** An override root's language when it names none: Python when it has Python files and no package.json. */
function languageOf(files: ReadonlySet<string>, root: string): IndexLanguage {
  if (files.has(join(root, "package.json"))) return "typescript";
  return ["pyproject.toml", "setup.py", "requirements.txt"].some((name) => files.has(join(root, name))) ? "python" : "typescript";
}

/** The indexing jobs for a tree; a ValidationError starting "nothing to index" says why there are none. */
export async function inferIndexPlans(tree: SourceTree, options: InferOptions): Promise<IndexPlan[]> {
  const files = await tree.files();
  const set = new Set(files);
  const treeOverride = options.override === undefined ? await tree.read(INDEX_OVERRIDE_FILE) : undefined;
  const override =
    options.override !== undefined
      ? { parsed: parseIndexOverride(options.override, "index config of the repository"), source: "coordinator" as const }
      : treeOverride !== undefined
        ? { parsed: parseIndexOverride(treeOverride, INDEX_OVERRIDE_FILE), source: "override" as const }
        : undefined;
  const pyprojects = new Map<string, string | undefined>();
  const readPyproject = async (root: string): Promise<void> => {
    if (set.has(join(root, "pyproject.toml"))) pyprojects.set(root, await tree.read(join(root, "pyproject.toml")));
  };
  if (override) {
    const choices = override.parsed.roots.map((root) => ({ ...root, root: root.path, language: root.language ?? languageOf(set, root.path), image: root.image ?? override.parsed.image }));
    for (const choice of choices) if (choice.language === "python") await readPyproject(choice.root);
    return choices.map((choice) => plan(set, pyprojects, options, choice, override.source));
  }
  const { roots, packages } = await typescriptRoots(tree, files);
  const python = pythonRoots(files);
  if (roots.length === 0 && python.length === 0) {
    const why =
      packages.length === 0
        ? "it has no package.json (TypeScript/JavaScript projects are found by a package.json with a tsconfig.json or jsconfig.json beside it) and no pyproject.toml, setup.py or requirements.txt (Python projects)"
        : `none of its package.json files (${packages.slice(0, 5).map((dir) => join(dir, "package.json")).join(", ")}${packages.length > 5 ? ", ..." : ""}) has a tsconfig.json or jsconfig.json beside it, and it has no pyproject.toml, setup.py or requirements.txt`;
    throw new ValidationError(`nothing to index in ${options.repository} at ${options.commit.slice(0, 12)}: ${why}; add ${INDEX_OVERRIDE_FILE} to name roots yourself`);
  }
  for (const root of python) await readPyproject(root);
  return [
    ...roots.map((root) => plan(set, pyprojects, options, { root, language: "typescript" }, "inferred")),
    ...python.map((root) => plan(set, pyprojects, options, { root, language: "python" }, "inferred")),
  ];
}
