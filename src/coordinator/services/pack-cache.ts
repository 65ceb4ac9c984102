/**
 * The coordinator's pack cache: packs that `git upload-pack` made, kept by request, so serving
 * the same fetch again (a thousand executors cloning one commit, each executor's first fetch of a
 * repository) streams a file instead of making the pack again.
 *
 * git runs the hook named by `uploadpack.packObjectsHook` (given on upload-pack's command line,
 * where git honours it) in place of `git pack-objects`, with pack-objects' arguments and its
 * request (wants, haves, shallow boundaries) on stdin. The hook keys a pack by sha256 of the
 * repository's mirror path, the arguments and the request. A request names objects by id, and an
 * id always names the same objects, so a kept pack stays right for its key as the repository
 * moves on. A pack is kept only when pack-objects succeeded and the whole of it was written
 * out; a hit touches the file, so eviction (oldest first past the size cap, run after serving)
 * is least recently used.
 *
 * Concurrency: two identical requests at once may both miss and both make the pack; each writes
 * its own temporary file and renames it into place, so readers only ever see whole packs. Eviction
 * removes files that a hit may be reading: the open file stays readable after its unlink.
 */
import { chmod, mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../common/logger.ts";

const HOOK = `#!/bin/sh
# Written by the Airlock coordinator (pack-cache.ts): stands in for \`git pack-objects\` ("$@").
dir=$AIRLOCK_PACK_CACHE
request=$(mktemp -p "$dir/tmp") || exec "$@"
trap 'rm -f "$request" "$request.pack" "$request.status"' EXIT
cat >"$request"
key=$( { printf '%s\\n' "$AIRLOCK_PACK_REPOSITORY" "$@"; cat "$request"; } | sha256sum | cut -c1-64)
pack="$dir/$key.pack"
if [ -f "$pack" ] && touch "$pack" 2>/dev/null; then
  rm -f "$request"
  trap - EXIT
  exec cat "$pack"
fi
{ "$@" <"$request"; echo $? >"$request.status"; } | tee "$request.pack"
status=$(cat "$request.status" 2>/dev/null || echo 1)
if [ "$status" = 0 ] && [ -s "$request.pack" ]; then mv -f "$request.pack" "$pack"; fi
exit "$status"
`;

export class PackCache {
  private readonly dir: string;
  private readonly maxBytes: number;
  private readonly logger: Logger;
  private pruning: Promise<void> | undefined;
  private prunePending = false;

  private constructor(dir: string, maxBytes: number, logger: Logger) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    this.logger = logger;
  }

  /** The cache in `dir` (made, with its hook, now); undefined when `maxBytes` is 0 (off). */
  static async open(dir: string, maxBytes: number, logger: Logger): Promise<PackCache | undefined> {
    if (maxBytes <= 0) return undefined;
    await rm(join(dir, "tmp"), { recursive: true, force: true });
    await mkdir(join(dir, "tmp"), { recursive: true, mode: 0o700 });
    await writeFile(join(dir, "hook.sh"), HOOK);
    await chmod(join(dir, "hook.sh"), 0o700);
    return new PackCache(dir, maxBytes, logger);
  }

  /** upload-pack's extra arguments and environment for serving `mirror` through the cache. */
  uploadPackOptions(mirror: string): { config: string[]; env: Record<string, string> } {
    return {
      // git runs the value as a shell command, pack-objects' arguments appended.
      config: ["-c", `uploadpack.packObjectsHook='${join(this.dir, "hook.sh").replaceAll("'", `'\\''`)}'`],
      env: { AIRLOCK_PACK_CACHE: this.dir, AIRLOCK_PACK_REPOSITORY: mirror },
    };
  }

  /** Evicts least recently used packs past the cap; called after each served pack, one run at a time. */
  prune(): void {
    if (this.pruning) {
      this.prunePending = true;
      return;
    }
    this.pruning = this.evict()
      .catch((error: unknown) => this.logger.warn("pack cache eviction failed", { error: String(error) }))
      .finally(() => {
        this.pruning = undefined;
        if (this.prunePending) {
          this.prunePending = false;
          this.prune();
        }
      });
  }

  /** Resolves when no eviction is running (tests). */
  async settled(): Promise<void> {
    while (this.pruning) await this.pruning;
  }

  private async evict(): Promise<void> {
    const names = (await readdir(this.dir)).filter((name) => name.endsWith(".pack"));
    const packs = (
      await Promise.all(
        names.map(async (name) => {
          const info = await stat(join(this.dir, name)).catch(() => undefined);
          return info ? { path: join(this.dir, name), bytes: info.size, usedMs: info.mtimeMs } : undefined;
        }),
      )
    ).filter((pack) => pack !== undefined);
    let total = packs.reduce((sum, pack) => sum + pack.bytes, 0);
    packs.sort((a, b) => a.usedMs - b.usedMs);
    for (const pack of packs) {
      if (total <= this.maxBytes) break;
      await rm(pack.path, { force: true });
      total -= pack.bytes;
    }
  }
}
