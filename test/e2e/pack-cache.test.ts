/**
 * The coordinator's pack cache with real git: a repeated clone of one commit is served from the
 * kept pack (and is correct), packs past the size cap go least recently used first, and the
 * cache can be turned off.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { gitEnv, runChecked } from "../../src/common/exec.ts";
import { baseEnv, makeRepo, startCluster, type Cluster } from "../helpers/cluster.ts";

const env = gitEnv(baseEnv);

function randomFiles(count: number): Record<string, string> {
  const files: Record<string, string> = { "README.md": "pack cache\n" };
  for (let index = 0; index < count; index += 1) files[`data/${index}.txt`] = `${randomBytes(512).toString("hex")}\n`;
  return files;
}

async function clone(cluster: Cluster, repository: string, target: string, depth = true): Promise<void> {
  const url = `${cluster.coordinator.url}/.executors/git/${repository}`;
  await runChecked("git", ["-c", `http.extraHeader=Authorization: Bearer ${cluster.coordinator.apiToken}`, "clone", "--quiet", ...(depth ? ["--depth", "1"] : []), url, target], { env });
}

async function cachedPacks(cluster: Cluster): Promise<{ name: string; mtimeMs: number }[]> {
  const dir = join(cluster.coordinator.dataDir, "pack-cache");
  const names = (await readdir(dir)).filter((name) => name.endsWith(".pack"));
  return Promise.all(names.map(async (name) => ({ name, mtimeMs: (await stat(join(dir, name))).mtimeMs })));
}

/** Waits (untimed: until it holds) for the cache to settle after a served pack. */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let tries = 0; tries < 200; tries += 1) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`never happened: ${what}`);
}

describe("coordinator pack cache", () => {
  let cluster: Cluster;
  after(async () => cluster?.close());

  it("serves a repeated clone of one commit from the kept pack, and the clone is correct", async () => {
    cluster = await startCluster({ executors: 0 });
    const files = randomFiles(50);
    await cluster.api.addRepository("acme/packed", await makeRepo(join(cluster.dir, "source"), files));
    await clone(cluster, "acme/packed", join(cluster.dir, "first"));
    const kept = await cachedPacks(cluster);
    assert.equal(kept.length, 1, "the first clone's pack is kept");
    const packPath = join(cluster.coordinator.dataDir, "pack-cache", kept[0]?.name ?? "");
    const old = new Date("2001-01-01T00:00:00Z");
    await utimes(packPath, old, old);
    await clone(cluster, "acme/packed", join(cluster.dir, "second"));
    const after = await cachedPacks(cluster);
    assert.deepEqual(after.map((pack) => pack.name), kept.map((pack) => pack.name), "no new pack was made for the same request");
    assert.ok((after[0]?.mtimeMs ?? 0) > old.getTime() + 86_400_000, "the kept pack was used (its time touched)");
    await runChecked("git", ["fsck", "--no-progress"], { env, cwd: join(cluster.dir, "second") });
    assert.equal(await readFile(join(cluster.dir, "second", "data", "7.txt"), "utf8"), files["data/7.txt"]);
    // A different request (the whole history rather than depth 1) is a pack of its own.
    await clone(cluster, "acme/packed", join(cluster.dir, "full"), false);
    assert.equal((await cachedPacks(cluster)).length, 2);
  });
});

describe("coordinator pack cache eviction", () => {
  let cluster: Cluster;
  after(async () => cluster?.close());

  it("evicts the least recently used pack past the cap", async () => {
    // Each repository's pack is about 21 KB (40 KB of random hex compresses to half): one fits, two do not.
    cluster = await startCluster({ executors: 0, coordinatorArgs: ["--git-pack-cache-max", "32k"] });
    for (const name of ["one", "two"]) await cluster.api.addRepository(`acme/${name}`, await makeRepo(join(cluster.dir, `source-${name}`), randomFiles(40)));
    await clone(cluster, "acme/one", join(cluster.dir, "one"));
    await until(async () => (await cachedPacks(cluster)).length === 1, "the first pack kept");
    const first = (await cachedPacks(cluster))[0]?.name;
    await clone(cluster, "acme/two", join(cluster.dir, "two"));
    await until(async () => {
      const names = (await cachedPacks(cluster)).map((pack) => pack.name);
      return names.length === 1 && names[0] !== first;
    }, "the older pack evicted and the newer kept");
    await runChecked("git", ["fsck", "--no-progress"], { env, cwd: join(cluster.dir, "two") });
  });
});

describe("coordinator pack cache off", () => {
  let cluster: Cluster;
  after(async () => cluster?.close());

  it("keeps no packs and still serves clones", async () => {
    cluster = await startCluster({ executors: 0, coordinatorArgs: ["--git-pack-cache-max", "off"] });
    await cluster.api.addRepository("acme/plain", await makeRepo(join(cluster.dir, "source"), randomFiles(5)));
    await clone(cluster, "acme/plain", join(cluster.dir, "plain"));
    assert.equal(existsSync(join(cluster.coordinator.dataDir, "pack-cache")), false);
    await runChecked("git", ["fsck", "--no-progress"], { env, cwd: join(cluster.dir, "plain") });
  });
});
