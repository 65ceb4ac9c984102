/** The executor's job dir remover (src/executor/dir-remover.ts) on real directories. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { DirRemover } from "../../src/executor/dir-remover.ts";

describe("the job dir remover", () => {
  const remover = new DirRemover();
  const made: string[] = [];
  after(async () => {
    await remover.close();
    for (const dir of made) await rm(dir, { recursive: true, force: true });
  });

  async function tree(files: number): Promise<string> {
    const root = await mkdtemp(join(tmpdir(), "airlock-remover-"));
    made.push(root);
    await mkdir(join(root, "workspace", "deep", "er"), { recursive: true });
    await Promise.all(Array.from({ length: files }, (_, index) => writeFile(join(root, "workspace", index % 2 ? "deep/er" : "deep", `f${index}`), "x")));
    return root;
  }

  it("removes whole trees, several at once, each answered on its own", async () => {
    const roots = await Promise.all([tree(200), tree(3), tree(50)]);
    await Promise.all(roots.map((root) => remover.remove(root)));
    for (const root of roots) assert.equal(existsSync(root), false, `${root} is gone`);
  });

  it("takes a missing path as done, and removes a symlink without following it", async () => {
    await remover.remove(join(tmpdir(), "airlock-remover-never-made"));
    const outside = await tree(2);
    const root = await tree(1);
    await symlink(outside, join(root, "workspace", "link"));
    await remover.remove(root);
    assert.equal(existsSync(root), false);
    assert.equal(existsSync(join(outside, "workspace", "deep", "f0")), true, "the link's target is untouched");
  });

  it("refuses work once closed", async () => {
    const closing = new DirRemover();
    await closing.remove(await tree(1));
    await closing.close();
    await assert.rejects(closing.remove(await tree(1)), /closed/);
  });
});
