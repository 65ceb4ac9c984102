/**
 * The executor's npm package cache on real files: a step's tarballs are kept only when their
 * bytes hash to the SHA-512 they are named by; everything else a step leaves (a planted file
 * under a real package's digest, index entries, symlinks, odd names) is refused or ignored, and a
 * lend hands out copies the step may scribble on without touching the cache.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { silentLogger } from "../../src/common/logger.ts";
import { lendPackageCache, NPM_CONTENT, PackageCache } from "../../src/executor/package-cache.ts";
import { tempDir } from "../helpers/cluster.ts";

const hex = (data: string | Buffer): string => createHash("sha512").update(data).digest("hex");
const contentPath = (root: string, digest: string): string => join(root, NPM_CONTENT, digest.slice(0, 2), digest.slice(2, 4), digest.slice(4));

async function put(root: string, digest: string, data: string | Buffer): Promise<void> {
  const path = contentPath(root, digest);
  await mkdir(join(path, ".."), { recursive: true });
  await writeFile(path, data);
}

describe("package cache", () => {
  let dir: string;
  before(async () => {
    dir = await tempDir("airlock-package-cache-");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps what hashes to its name, refuses a planted file, symlinks and odd names, and never keeps index entries", async () => {
    const cache = new PackageCache({ dir: join(dir, "executor"), maxBytes: 1 << 30, logger: silentLogger });
    const job = join(dir, "job-a");
    const genuine = "genuine tarball bytes";
    await put(job, hex(genuine), genuine);
    // A job plants other bytes under the digest of a package another job's lockfile names.
    const victim = hex("the real is-number-7.0.0.tgz");
    await put(job, victim, "evil tarball");
    await put(job, "ab".repeat(10), "short name");
    await mkdir(join(job, "_cacache", "index-v5", "aa", "bb"), { recursive: true });
    await writeFile(join(job, "_cacache", "index-v5", "aa", "bb", "entry"), JSON.stringify({ key: "make-fetch-happen:request-cache:https://registry.npmjs.org/is-number", integrity: `sha512-${Buffer.from(victim, "hex").toString("base64")}` }));
    const secret = join(dir, "host-secret");
    await writeFile(secret, "host secret");
    const link = contentPath(job, hex("host secret"));
    await mkdir(join(link, ".."), { recursive: true });
    await symlink(secret, link);

    const result = await cache.harvest(job);
    assert.deepEqual(result, { kept: 1, refused: 3, bytes: genuine.length });
    const kept = join(dir, "executor", "npm", "content-v2", "sha512");
    assert.equal(await readFile(join(kept, hex(genuine).slice(0, 2), hex(genuine).slice(2, 4), hex(genuine).slice(4)), "utf8"), genuine);
    assert.ok(!existsSync(join(kept, victim.slice(0, 2), victim.slice(2, 4), victim.slice(4))), "the planted file is not kept");
    assert.ok(!existsSync(join(kept, hex("host secret").slice(0, 2), hex("host secret").slice(2, 4), hex("host secret").slice(4))), "the symlink was not followed");
    assert.deepEqual(await readdir(join(dir, "executor", "npm")), ["content-v2"], "no index entries are kept");

    // Job B gets copies: writing over one changes nothing in the cache.
    const log: string[] = [];
    const lent = await lendPackageCache(cache, join(dir, "workspace-b"), false, { write: (text) => log.push(text) });
    assert.deepEqual(lent.env, { npm_config_cache: "/work/.airlock-cache/npm" });
    assert.match(log.join(""), /1 verified tarball\(s\) lent/);
    const copy = contentPath(join(dir, "workspace-b", ".airlock-cache", "npm"), hex(genuine));
    assert.equal(await readFile(copy, "utf8"), genuine);
    await writeFile(copy, "overwritten by job B");
    await lent.end(true);
    assert.match(log.join(""), /kept 0 new tarball\(s\) \(0B\)\n/, "a digest the cache holds already is not taken again from a job");
    assert.ok(!existsSync(join(dir, "workspace-b", ".airlock-cache")), "the lent copy is gone after the step");
    assert.equal(await readFile(join(kept, hex(genuine).slice(0, 2), hex(genuine).slice(2, 4), hex(genuine).slice(4)), "utf8"), genuine);
  });

  it("evicts the least recently used tarballs past its size", async () => {
    const cache = new PackageCache({ dir: join(dir, "small"), maxBytes: 250, logger: silentLogger });
    for (const name of ["one", "two", "three"]) {
      const job = join(dir, `job-${name}`);
      const data = name.repeat(100).slice(0, 100);
      await put(job, hex(data), data);
      assert.equal((await cache.harvest(job)).kept, 1);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const left = await lendPackageCache(cache, join(dir, "workspace-small"), true, { write: () => undefined });
    assert.ok(left.env.npm_config_cache!.startsWith(join(dir, "workspace-small")), "the shell runtime gets the host path");
    const files = (await readdir(join(dir, "workspace-small", ".airlock-cache", "npm", NPM_CONTENT), { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile());
    assert.equal(files.length, 2, "the oldest of three 100-byte tarballs went to stay within 250 bytes");
    await left.end(false);
  });
});
