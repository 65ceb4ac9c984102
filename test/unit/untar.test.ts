/** The tar unpacking a VM's workspace comes back through: crafted archives cannot escape or write through links. */
import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { pack, type Header } from "tar-stream";
import { extractTar, UnsafeArchive } from "../../src/runtimes/microvm/untar.ts";

type Entry = Partial<Header> & { name: string; body?: string };

async function archive(entries: Entry[]): Promise<Readable> {
  const packer = pack();
  for (const { body, ...header } of entries) {
    await new Promise<void>((resolve, reject) => packer.entry({ type: "file", mode: 0o644, ...header }, body ?? "", (error) => (error ? reject(error) : resolve())));
  }
  packer.finalize();
  return Readable.from(packer as AsyncIterable<Buffer>);
}

describe("extractTar (workspace return)", () => {
  let root: string;
  let n = 0;
  const fresh = async (): Promise<string> => {
    const dir = join(root, `out-${n++}`);
    await mkdir(dir);
    return dir;
  };
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "airlock-untar-"));
    await mkdir(join(root, "outside"));
  });
  after(() => rm(root, { recursive: true, force: true }));
  const policy = {};

  it("unpacks files, dirs, modes and symlinks as they are, without following them", async () => {
    const dest = await fresh();
    const skipped: string[] = [];
    await extractTar(
      await archive([
        { name: "./", type: "directory", mode: 0o755 },
        { name: "./src/", type: "directory", mode: 0o755 },
        { name: "./src/run.sh", mode: 0o4755, body: "#!/bin/sh\n" },
        { name: "./escape", type: "symlink", linkname: join(root, "outside") },
        { name: "./up", type: "symlink", linkname: "../../outside" },
        { name: "./dev-null", type: "character-device", devmajor: 1, devminor: 3 },
        { name: "./hard", type: "link", linkname: "./src/run.sh" },
      ]),
      dest,
      { ...policy, onSkip: (name) => skipped.push(name) },
    );
    assert.equal(await readFile(join(dest, "src/run.sh"), "utf8"), "#!/bin/sh\n");
    assert.equal((await lstat(join(dest, "src/run.sh"))).mode & 0o7777, 0o755, "setuid is dropped");
    assert.equal(await readlink(join(dest, "escape")), join(root, "outside"));
    assert.equal(await readlink(join(dest, "up")), "../../outside");
    assert.deepEqual(skipped, ["./dev-null"], "device nodes are not made");
    assert.equal((await lstat(join(dest, "hard"))).nlink, 2);
  });

  for (const [what, entries] of [
    ["an absolute path", [{ name: "/etc/evil", body: "x" }]],
    ["a path with ..", [{ name: "a/../../evil", body: "x" }]],
    ["a file under a symlink", [{ name: "link", type: "symlink", linkname: "" }, { name: "link/evil", body: "x" }]],
    ["a hard link out of the tree", [{ name: "hard", type: "link", linkname: "../outside/x" }]],
  ] as [string, Entry[]][]) {
    it(`refuses ${what}, and writes nothing outside`, async () => {
      const dest = await fresh();
      const linked = entries.map((entry) => (entry.type === "symlink" ? { ...entry, linkname: join(root, "outside") } : entry));
      await assert.rejects(extractTar(await archive(linked), dest, policy), UnsafeArchive);
      assert.deepEqual(await readdir(join(root, "outside")), []);
    });
  }

  it("replaces an existing symlink with a file instead of writing through it", async () => {
    const dest = await fresh();
    await symlink(join(root, "outside", "target.txt"), join(dest, "name"));
    await extractTar(await archive([{ name: "name", body: "mine" }]), dest, policy);
    assert.equal(await readFile(join(dest, "name"), "utf8"), "mine");
    assert.deepEqual(await readdir(join(root, "outside")), []);
  });
});
