/**
 * Bad batch specs get a clear 400 naming the field and the line, and nothing is created: no
 * batch, no job. Unknown repositories, a pattern matching nothing, a bad template, a step with no
 * image where every step runs in one, plus malformed YAML and unknown fields.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ValidationError } from "../../src/protocol/index.ts";
import { BIN, baseEnv, http, makeRepo, startCluster, type Cluster } from "../helpers/cluster.ts";

const GOOD = `name: fine
on:
  - acme/web
isolation: none
steps:
  - run: echo \${{ repository.name }}
`;

describe("bad batch specs", { timeout: 120_000 }, () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ executors: 0 });
    await cluster.api.addRepository("acme/web", await makeRepo(join(cluster.dir, "web"), { "a.txt": "a\n" }));
    await cluster.api.addRepository("acme/api", await makeRepo(join(cluster.dir, "api"), { "b.txt": "b\n" }));
  });
  after(async () => {
    await cluster?.close();
  });

  async function refused(spec: string, pattern: RegExp, field?: string): Promise<void> {
    await assert.rejects(cluster.api.previewBatch(spec), (error: unknown) => {
      assert.ok(error instanceof ValidationError, String(error));
      assert.match(error.message, pattern);
      if (field !== undefined) assert.equal(error.field, field);
      return true;
    });
    assert.deepEqual(await cluster.api.listBatches(), [], "no batch was created");
    assert.deepEqual(await cluster.api.listJobs(), [], "no job was created");
  }

  it("lists every unknown repository, with the line", async () => {
    await refused(GOOD.replace("  - acme/web\n", "  - acme/web\n  - acme/nope\n  - acme/nada\n"), /line 4: on\[1\]: unknown repositories: acme\/nope, acme\/nada/, "on.1");
  });

  it("names a pattern that matches nothing", async () => {
    await refused(GOOD.replace("  - acme/web\n", "  - acme/web\n  - \"other/*\"\n"), /line 4: on\[1\]: "other\/\*" matches no registered repository/);
    await refused(GOOD.replace("  - acme/web\n", "  - repositoriesMatching: { path: package.json }\n"), /line 3: on\[0\]\.repositoriesMatching: no registered repository has package.json at HEAD/);
  });

  it("names the step, field, line and column of a bad template", async () => {
    await refused(GOOD.replace("repository.name", "repository.nme"), /line 6: steps\[0\]\.run: template error in step 1 at column \d+: unknown variable "repository.nme"/, "steps.0.run");
    await refused(GOOD.replace("${{ repository.name }}", "${{ repository.name"), /line 6: steps\[0\]\.run: .*unclosed \$\{\{/);
    await refused(`${GOOD}  - run: echo \${{ outputs.missing }}\n`, /line 7: steps\[1\]\.run: .*output "missing" is not declared by an earlier step/);
    await refused(`${GOOD}changesetTemplate:\n  branch: b/\${{ nope(1) }}\n`, /line 8: changesetTemplate\.branch: template error .*unknown function nope\(\)/);
  });

  it("refuses a step with no image when the isolation runs every step in an image", async () => {
    await refused(GOOD.replace("isolation: none", "isolation: container"), /line 6: steps\[0\]: step 1 names no image, but isolation container runs every step in an image/, "steps.0");
  });

  it("refuses malformed YAML, unknown fields and bad job options, with the line", async () => {
    await refused(`${GOOD}  - run: [unclosed\n`, /not valid YAML/);
    await refused(GOOD.replace("isolation: none", "isolation: none\nretries: 3"), /line 5: retries: unknown field "retries"/);
    await refused(GOOD.replace("isolation: none", "isolation: strong"), /line 4: isolation: /);
    await refused(GOOD.replace("steps:\n  - run: echo ${{ repository.name }}\n", "steps: []\n"), /steps: a batch needs at least one step/);
    const raw = await http(`${cluster.coordinator.url}/api/batches`, { method: "POST", headers: { authorization: `Bearer ${cluster.coordinator.apiToken}`, "content-type": "application/json" }, body: JSON.stringify({ spec: 42 }) });
    assert.equal(raw.status, 400);
  });

  it("prints the error and exits 2 from the CLI, creating nothing", async () => {
    const file = join(cluster.dir, "bad.yaml");
    await writeFile(file, GOOD.replace("acme/web", "acme/gone"));
    const env = { ...baseEnv, AIRLOCK_URL: cluster.coordinator.url, AIRLOCK_DATA: cluster.coordinator.dataDir };
    const result = spawnSync(BIN, ["batch", "preview", file], { env, encoding: "utf8", cwd: cluster.dir });
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /^airlock: invalid batch spec: line 3: on\[0\]: unknown repositories: acme\/gone/m);
    assert.deepEqual(await cluster.api.listBatches(), []);
  });
});
