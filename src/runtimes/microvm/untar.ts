/**
 * Unpacking tar streams that come from an untrusted place (the workspace a VM sends back) into a
 * directory only we write to. Every path is checked: absolute paths and `..` are refused,
 * nothing is written through a symlink (each parent must be a real directory we made), hard
 * links must point at regular files inside, device nodes and FIFOs are skipped. Symlinks are
 * created as they are, whatever they point at: they are never followed here.
 */
import { chmod, link, lstat, mkdir, open, rm, symlink, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { extract, type Header } from "tar-stream";
import { SandboxError } from "../../protocol/index.ts";

export class UnsafeArchive extends SandboxError {}

export interface ExtractPolicy {
  /** Told about each entry that was skipped, and why. */
  onSkip?: (name: string, why: string) => void;
}

/** The entry's path as checked components, or [] for the root itself. */
export function safeComponents(name: string): string[] {
  if (name.startsWith("/")) throw new UnsafeArchive(`the archive has an absolute path: ${JSON.stringify(name.slice(0, 200))}`);
  const parts = name.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) throw new UnsafeArchive(`the archive has a path with "..": ${JSON.stringify(name.slice(0, 200))}`);
  if (parts.some((part) => part.includes("\0"))) throw new UnsafeArchive("the archive has a path with a NUL byte");
  return parts;
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const chunk of stream) void chunk;
}

/** Writes a new file (O_CREAT|O_EXCL: never through a symlink at the last component). */
async function writeNew(path: string, data: AsyncIterable<Uint8Array>): Promise<void> {
  const handle = await open(path, "wx", 0o600);
  try {
    for await (const chunk of data) await handle.write(chunk);
  } finally {
    await handle.close();
  }
}

export async function extractTar(source: Readable, dest: string, policy: ExtractPolicy): Promise<{ entries: number }> {
  const dirs = new Set<string>([dest]);
  const dirModes: [string, number][] = [];
  let entries = 0;

  /** Makes sure every parent of `parts` is a real directory, creating the missing ones. */
  const parentOf = async (parts: string[], name: string): Promise<string> => {
    let path = dest;
    for (const part of parts.slice(0, -1)) {
      path = join(path, part);
      if (dirs.has(path)) continue;
      const info = await lstat(path).catch(() => undefined);
      if (!info) await mkdir(path, { mode: 0o755 });
      else if (!info.isDirectory()) throw new UnsafeArchive(`${JSON.stringify(name.slice(0, 200))} would be written through ${info.isSymbolicLink() ? "a symlink" : "a non-directory"}`);
      dirs.add(path);
    }
    return path;
  };

  /** Removes what is at `path` (not following symlinks) so that a new entry can take its place. */
  const clear = async (path: string, keepDir: boolean): Promise<void> => {
    const info = await lstat(path).catch(() => undefined);
    if (!info) return;
    if (info.isDirectory()) {
      if (keepDir) return;
      await rm(path, { recursive: true, force: true });
      for (const dir of dirs) if (dir === path || dir.startsWith(`${path}/`)) dirs.delete(dir);
    } else {
      await unlink(path);
    }
  };

  const parser = extract();
  const done = pipeline(source, parser);
  done.catch(() => undefined);
  for await (const entry of parser) {
    const header: Header = entry.header;
    const name = header.name;
    entries += 1;
    const parts = safeComponents(name);
    if (parts.length === 0) {
      await drain(entry);
      continue;
    }
    const parent = await parentOf(parts, name);
    const base = parts[parts.length - 1] as string;
    const path = join(parent, base);
    // Owners and set-id bits stay behind: the files are the job's, on the host.
    const mode = (header.mode ?? 0o644) & 0o777;
    switch (header.type) {
      case "directory":
        await drain(entry);
        await clear(path, true);
        await mkdir(path, { mode: 0o755 }).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "EEXIST") throw error;
        });
        dirs.add(path);
        dirModes.push([path, mode]);
        break;
      case "file":
      case "contiguous-file":
        await clear(path, false);
        await writeNew(path, entry as AsyncIterable<Uint8Array>);
        await chmod(path, mode);
        break;
      case "symlink":
        await drain(entry);
        await clear(path, false);
        await symlink(header.linkname ?? "", path);
        break;
      case "link": {
        await drain(entry);
        const targetParts = safeComponents(header.linkname ?? "");
        const target = join(await parentOf(targetParts, header.linkname ?? ""), targetParts.at(-1) ?? "");
        const info = await lstat(target).catch(() => undefined);
        if (!info?.isFile()) {
          policy.onSkip?.(name, "a hard link to something that is not a regular file in the archive");
          continue;
        }
        await clear(path, false);
        await link(target, path);
        break;
      }
      default:
        await drain(entry);
        policy.onSkip?.(name, `a ${header.type ?? "special file"} (not unpacked)`);
        continue;
    }
  }
  await done;
  // Directory modes last, so that a read-only directory could still be filled.
  for (const [path, mode] of dirModes.reverse()) await chmod(path, mode);
  return { entries };
}
