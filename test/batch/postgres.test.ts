/**
 * A batch on a coordinator using the Postgres store: preview, the cache on a second preview,
 * retry and apply, as on SQLite.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { dropTemplate, freshDatabase, NO_POSTGRES } from "../helpers/postgres.ts";
import { git, makeRepos, waitForBatch } from "./helpers.ts";

const SPEC = `name: pg-batch
on: ["acme/*"]
isolation: none
steps:
  - run: sed -i s/one/two/ a.txt
    outputs:
      done: { value: "yes" }
changesetTemplate:
  commit:
    message: "two in \${{ repository.name }} (\${{ outputs.done }})"
`;

describe("batches on the Postgres store", { timeout: 180_000 }, () => {
  let cluster: Cluster | undefined;
  let drop: (() => Promise<void>) | undefined;
  let origins: Map<string, string>;

  before(async () => {
    if (NO_POSTGRES) return;
    const database = await freshDatabase();
    drop = database.drop;
    cluster = await startCluster({ coordinatorArgs: ["--database", database.url], executorArgs: ["--queues", "batch", "--max-jobs", "2"] });
    origins = await makeRepos(cluster.api, cluster.dir, 4, (index) => ({ "a.txt": `one ${index}\n`, "b.txt": "b\n" }));
  });
  after(async () => {
    await cluster?.close();
    await drop?.();
    await dropTemplate();
  });

  it("previews, reuses results, retries and applies", async (t) => {
    if (!cluster) return t.skip(NO_POSTGRES);
    await cluster.api.previewBatch(SPEC);
    const first = await waitForBatch(cluster.api, "pg-batch");
    assert.deepEqual(first.entries.map((entry) => [entry.state, entry.diffStat]), Array(4).fill(["completed", { files: 1, added: 1, deleted: 1 }]));
    const second = await cluster.api.previewBatch(SPEC);
    assert.equal(second.version.version, 2);
    assert.ok(second.entries.every((entry) => entry.cached && entry.state === "completed"));
    const retried = await cluster.api.retryBatch("pg-batch");
    assert.ok(retried.entries.every((entry) => !entry.cached && entry.jobId !== null));
    await waitForBatch(cluster.api, "pg-batch");
    const { results } = await cluster.api.applyBatch("pg-batch");
    assert.deepEqual(results.map((result) => result.state), ["pushed", "pushed", "pushed", "pushed"]);
    for (const [name, origin] of origins) {
      assert.equal((await git(origin, "log", "-1", "--format=%s", "batch/pg-batch")).trim(), `two in ${name} (yes)`);
    }
    assert.deepEqual((await cluster.api.listBatches()).map((batch) => [batch.name, batch.latestVersion, batch.counts["apply:pushed"]]), [["pg-batch", 2, 4]]);
  });
});
