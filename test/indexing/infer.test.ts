/** Inference of indexing jobs from a tree's files, and the override file. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inferIndexPlans, memoryTree } from "../../src/indexing/index.ts";
import { ValidationError } from "../../src/protocol/index.ts";

const OPTIONS = { repository: "acme/web", commit: "a".repeat(40) };

describe("index inference", () => {
  it("finds a TypeScript root with npm ci from its lockfile, and uploads its index.scip", async () => {
    const plans = await inferIndexPlans(memoryTree({ "package.json": "{}", "package-lock.json": "{}", "tsconfig.json": "{}", "src/a.ts": "" }), OPTIONS);
    assert.equal(plans.length, 1);
    const [plan] = plans;
    assert.equal(plan!.root, ".");
    assert.equal(plan!.indexer, "scip-typescript");
    assert.equal(plan!.artifact, "index.scip");
    assert.deepEqual(plan!.spec.outputs.paths, ["index.scip"]);
    assert.equal(plan!.spec.network.mode, "internet");
    assert.deepEqual(plan!.spec.steps.map((step) => [step.key, step.dir, step.commands]), [
      ["install", ".", ["npm ci --no-audit --no-fund"]],
      ["index", ".", ["scip-typescript index --output index.scip"]],
    ]);
    assert.equal(plan!.spec.steps[0]!.image, "airlock-test/node-indexer");
  });

  it("makes one job per package of a monorepo, installing at the lockfile's directory with its package manager", async () => {
    const tree = memoryTree({
      "package.json": JSON.stringify({ workspaces: ["packages/*"] }),
      "tsconfig.json": "{}",
      "pnpm-lock.yaml": "",
      "packages/a/package.json": "{}",
      "packages/a/tsconfig.json": "{}",
      "packages/b/package.json": "{}",
      "packages/b/jsconfig.json": "{}",
      "packages/c/package.json": "{}",
      "node_modules/x/package.json": "{}",
      "node_modules/x/tsconfig.json": "{}",
    });
    const plans = await inferIndexPlans(tree, OPTIONS);
    assert.deepEqual(plans.map((plan) => plan.root), ["packages/a", "packages/b"]);
    const [a, b] = plans;
    assert.deepEqual(a!.spec.steps[0]!.commands, ["cd ../.. && npx --yes pnpm@9.15.0 install --frozen-lockfile"]);
    assert.equal(a!.spec.steps[0]!.dir, "packages/a");
    assert.deepEqual(b!.spec.steps[1]!.commands, ["scip-typescript index --output index.scip --infer-tsconfig"], "a jsconfig-only root gets an inferred tsconfig");
    assert.deepEqual(b!.spec.outputs.paths, ["packages/b/index.scip"]);
  });

  it("uses yarn for yarn.lock and npm install without a lockfile", async () => {
    const yarn = await inferIndexPlans(memoryTree({ "package.json": "{}", "yarn.lock": "", "tsconfig.json": "{}" }), OPTIONS);
    assert.match(yarn[0]!.spec.steps[0]!.commands[0]!, /yarn@1\.22\.22 install --frozen-lockfile/);
    const npm = await inferIndexPlans(memoryTree({ "package.json": "{}", "tsconfig.json": "{}" }), OPTIONS);
    assert.deepEqual(npm[0]!.spec.steps[0]!.commands, ["npm install --no-audit --no-fund"]);
  });

  it("says there is nothing to index, and why", async () => {
    await assert.rejects(inferIndexPlans(memoryTree({ "README.md": "hi", "main.py": "" }), OPTIONS), (error: Error) => {
      assert.ok(error instanceof ValidationError);
      assert.match(error.message, /^nothing to index in acme\/web at aaaaaaaaaaaa: it has no package\.json/);
      return true;
    });
    await assert.rejects(inferIndexPlans(memoryTree({ "package.json": "{}", "lib/package.json": "{}" }), OPTIONS), /nothing to index .*none of its package\.json files \(lib\/package\.json, package\.json\) has a tsconfig\.json or jsconfig\.json/);
  });

  it("follows airlock-index.yaml: its roots, install and index commands, image and indexer", async () => {
    const tree = memoryTree({
      "airlock-index.yaml": "image: my/indexer\nroots:\n  - path: app\n    install: []\n  - path: tools\n    index: my-indexer --out index.scip\n    indexer: { name: my-indexer, version: '2.1' }\n",
      "app/tsconfig.json": "{}",
    });
    const plans = await inferIndexPlans(tree, OPTIONS);
    assert.deepEqual(plans.map((plan) => [plan.root, plan.source, plan.indexer, plan.indexerVersion]), [
      ["app", "override", "scip-typescript", "0.4.0"],
      ["tools", "override", "my-indexer", "2.1"],
    ]);
    assert.deepEqual(plans[0]!.spec.steps.map((step) => step.key), ["index"], "install: [] installs nothing");
    assert.deepEqual(plans[1]!.spec.steps.at(-1)!.commands, ["my-indexer --out index.scip"]);
    assert.ok(plans.every((plan) => plan.spec.steps.every((step) => step.image === "my/indexer")));
  });

  it("refuses an override that is not valid, naming the problem", async () => {
    await assert.rejects(inferIndexPlans(memoryTree({ "airlock-index.yaml": "roots: [{ path: ../up }]" }), OPTIONS), /invalid airlock-index\.yaml.*could leave the workspace/);
    await assert.rejects(inferIndexPlans(memoryTree({ "airlock-index.yaml": "roots: []" }), OPTIONS), /invalid airlock-index\.yaml.*at least one root/);
    await assert.rejects(inferIndexPlans(memoryTree({ "airlock-index.yaml": "roots: [{ path: a, colour: red }]" }), OPTIONS), /invalid airlock-index\.yaml/);
    await assert.rejects(inferIndexPlans(memoryTree({ "airlock-index.yaml": "roots: [\n" }), OPTIONS), /airlock-index\.yaml is not valid YAML/);
  });

  it("finds Python roots (pyproject.toml, setup.py, a requirements.txt outside them) with pip into the root's own user site and scip-python", async () => {
    const tree = memoryTree({
      "services/api/pyproject.toml": '[build-system]\nrequires = ["hatchling"]\n\n[project]\nname = "acme-api"\nversion = "1.0"\n',
      "services/api/requirements.txt": "attrs==23.2.0\n",
      "services/api/docs/requirements.txt": "sphinx\n",
      "legacy/setup.py": "from setuptools import setup\nsetup()\n",
      "scripts/requirements.txt": "requests\n",
      ".venv/lib/python3.11/site-packages/x/pyproject.toml": "",
      "web/package.json": "{}",
      "web/tsconfig.json": "{}",
    });
    const plans = await inferIndexPlans(tree, OPTIONS);
    assert.deepEqual(plans.map((plan) => [plan.root, plan.language, plan.indexer, plan.indexerVersion]), [
      ["web", "typescript", "scip-typescript", "0.4.0"],
      ["legacy", "python", "scip-python", "0.6.6"],
      ["scripts", "python", "scip-python", "0.6.6"],
      ["services/api", "python", "scip-python", "0.6.6"],
    ]);
    const api = plans.find((plan) => plan.root === "services/api")!;
    assert.deepEqual(api.spec.outputs.paths, ["services/api/index.scip"]);
    assert.deepEqual(api.spec.steps.map((step) => [step.key, step.dir, step.image]), [
      ["install", "services/api", "airlock-test/python-indexer"],
      ["index", "services/api", "airlock-test/python-indexer"],
    ]);
    const userSite = 'export PYTHONUSERBASE="$PWD/.airlock-python" PATH="$PWD/.airlock-python/bin:$PATH"';
    assert.deepEqual(api.spec.steps[0]!.commands, [userSite, "pip3 install --user --no-warn-script-location -r requirements.txt", `src=$(mktemp -d) && cp -R . "$src" && pip3 install --user --no-warn-script-location "$src"`]);
    assert.deepEqual(api.spec.steps[1]!.commands, [userSite, "scip-python index . --project-name acme-api --project-version aaaaaaaaaaaa --output index.scip"], "the name comes from [project]");
    const scripts = plans.find((plan) => plan.root === "scripts")!;
    assert.match(scripts.spec.steps[1]!.commands[1]!, /--project-name scripts /, "no pyproject: the directory's name");
    assert.equal(scripts.spec.network.mode, "internet");
  });

  it("an override root with Python files is a Python root unless it says otherwise", async () => {
    const tree = memoryTree({
      "airlock-index.yaml": "roots:\n  - path: py\n    install: pip3 install --user -r requirements-dev.txt\n  - path: js\n    language: typescript\n",
      "py/setup.py": "",
      "js/requirements.txt": "",
    });
    const plans = await inferIndexPlans(tree, OPTIONS);
    assert.deepEqual(plans.map((plan) => [plan.root, plan.language, plan.indexer]), [["py", "python", "scip-python"], ["js", "typescript", "scip-typescript"]]);
    assert.deepEqual(plans[0]!.spec.steps[0]!.commands.slice(1), ["pip3 install --user -r requirements-dev.txt"]);
  });

  it("the coordinator's index config replaces the tree's file and inference", async () => {
    const tree = memoryTree({ "airlock-index.yaml": "roots: [{ path: a }]", "a/tsconfig.json": "{}", "b/package.json": "{}", "b/tsconfig.json": "{}" });
    const plans = await inferIndexPlans(tree, { ...OPTIONS, override: "image: ops/indexer\nroots: [{ path: b, install: [] }]\n" });
    assert.deepEqual(plans.map((plan) => [plan.root, plan.source, plan.spec.steps.map((step) => `${step.key}@${step.image}`).join(" ")]), [["b", "coordinator", "index@ops/indexer"]]);
    await assert.rejects(inferIndexPlans(tree, { ...OPTIONS, override: "roots: [{ path: /abs }]" }), /invalid index config of the repository/);
  });
});
