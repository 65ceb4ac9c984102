/**
 * Server-side batch steps in the bwrap runtime: each step in its image, templates rendered by the
 * executor between steps (an output of one step used by the next, a file templated with the
 * repository's name), the diff exactly as git gives it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { bwrapUnavailable, TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { expectedDiff, makeRepos, waitForBatch } from "./helpers.ts";

const SPEC = `name: bwrap-batch
on: ["acme/*"]
isolation: namespace
steps:
  - image: airlock-test/busybox
    run: grep -c foo notes.txt
    outputs:
      lines: { value: "\${{ trim(step.stdout) }}" }
  - image: airlock-test/busybox
    run: |
      sed -i 's/foo/bar/g' notes.txt
      echo "\${{ outputs.lines }} lines in \${{ repository.name }}" > SUMMARY.txt
    files:
      MAINTAINER: "\${{ upper(repository.name) }}\\n"
`;

describe("batch steps in bwrap", { timeout: 180_000 }, () => {
  let cluster: Cluster | undefined;
  let skipReason: string | undefined;
  let origins: Map<string, string>;

  before(async () => {
    skipReason = testImagesMissing();
    skipReason ??= await bwrapUnavailable();
    if (skipReason) {
      process.stdout.write(`# SKIP batch steps in bwrap: ${skipReason}\n`);
      return;
    }
    cluster = await startCluster({ runtime: "bwrap", executorArgs: ["--images", TEST_IMAGES, "--queues", "batch", "--max-jobs", "3"] });
    origins = await makeRepos(cluster.api, cluster.dir, 3, (index) => ({ "notes.txt": `foo\n`.repeat(index) + "plain\n", "other.txt": "x\n" }));
  });
  after(async () => {
    await cluster?.close();
  });

  it("runs each step in its image and renders the next step with the previous one's output", async (t) => {
    if (!cluster) return t.skip(skipReason);
    await cluster.api.previewBatch(SPEC);
    const view = await waitForBatch(cluster.api, "bwrap-batch");
    for (const entry of view.entries) assert.equal(entry.state, "completed", `${entry.repository}: ${entry.failureMessage}`);
    for (const [index, [name, origin]] of [...origins].entries()) {
      const lines = index + 1;
      const expected = await expectedDiff(origin, join(cluster.dir, "scratch"), {
        "notes.txt": `bar\n`.repeat(lines) + "plain\n",
        "SUMMARY.txt": `${lines} lines in ${name}\n`,
        MAINTAINER: `${name.toUpperCase()}\n`,
      });
      assert.equal(await cluster.api.batchDiff("bwrap-batch", { repository: name }), expected, name);
    }
  });
});
