/**
 * Directories built once and shared: unpacked image root filesystems, extracted OCI archives.
 *
 * `<root>/<key>` appears whole or not at all. A builder works in `<root>/.tmp-<pid>-<random>` and
 * renames it to `<root>/<key>` when done; rename is atomic, so whoever sees `<key>` sees a
 * complete tree, and a half-built one is never used. Within a process, concurrent requests for
 * one key share one build (the `building` map). Across processes (two executors on one data
 * dir) both may build; the first rename wins and the loser deletes its copy. Temporary dirs of
 * dead processes are removed by `reapTemporary` at executor start.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";

const TEMP = /^\.tmp-(\d+)-[0-9a-f]+$/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

export class BuildOnceDirs {
  readonly root: string;
  private readonly building = new Map<string, Promise<boolean>>();

  constructor(root: string) {
    this.root = root;
  }

  pathOf(key: string): string {
    return join(this.root, key);
  }

  async has(key: string): Promise<boolean> {
    return stat(this.pathOf(key)).then(
      () => true,
      () => false,
    );
  }

  /** Makes sure `<root>/<key>` exists, building it with `build(tempDir)` if needed; true if this very call built it. */
  async ensure(key: string, build: (tempDir: string) => Promise<void>): Promise<boolean> {
    if (await this.has(key)) return false;
    const pending = this.building.get(key);
    if (pending) {
      await pending;
      return false;
    }
    const building = this.build(key, build).finally(() => this.building.delete(key));
    this.building.set(key, building);
    return building;
  }

  private async build(key: string, build: (tempDir: string) => Promise<void>): Promise<boolean> {
    if (await this.has(key)) return false;
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const temp = join(this.root, `.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
    await mkdir(temp, { mode: 0o700 });
    try {
      await build(temp);
      await rename(temp, this.pathOf(key));
      return true;
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      const code = (error as NodeJS.ErrnoException).code;
      // Another process renamed its copy first: use that one.
      if ((code === "ENOTEMPTY" || code === "EEXIST") && (await this.has(key))) return false;
      throw error;
    }
  }

  /** Removes temporary dirs whose builder process is gone; returns how many. */
  async reapTemporary(): Promise<number> {
    const names = await readdir(this.root).catch(() => [] as string[]);
    let removed = 0;
    for (const name of names) {
      const match = TEMP.exec(name);
      if (!match || alive(Number(match[1]))) continue;
      await rm(join(this.root, name), { recursive: true, force: true });
      removed += 1;
    }
    return removed;
  }
}
