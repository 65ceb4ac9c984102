/**
 * The OCI images an operator offers the executor (`--images`): OCI layout directories, OCI
 * archives (tars of a layout), and directories searched a few levels deep for layouts. Archives
 * are extracted once into the cache (keyed by path, size and mtime) and then read as layouts.
 * The catalog is scanned on first use and again when a layout's index or an archive changes,
 * or when a name is not found (an image may have been added since).
 */
import { createHash } from "node:crypto";
import { readdir, realpath, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Logger } from "../../common/logger.ts";
import type { BuildOnceDirs } from "./cache.ts";
import { extractTarFile } from "./extract.ts";
import { readLayout, type LayoutImage } from "./layout.ts";

const SEARCH_DEPTH = 3;
/** How often a lookup checks whether a layout changed on disk. */
const STALE_CHECK_MS = 1000;

interface Fingerprint {
  file: string;
  mtimeMs: number;
  size: number;
}

async function fingerprint(file: string): Promise<Fingerprint | undefined> {
  const info = await stat(file).catch(() => undefined);
  return info ? { file, mtimeMs: info.mtimeMs, size: info.size } : undefined;
}

async function isLayout(dir: string): Promise<boolean> {
  return stat(join(dir, "oci-layout")).then(
    (info) => info.isFile(),
    () => false,
  );
}

export function archiveLabel(path: string): string {
  return basename(path).replace(/(\.oci)?\.tar$/, "");
}

export class ImageCatalog {
  readonly sources: readonly string[];
  private readonly archives: BuildOnceDirs;
  private readonly logger: Logger;
  private images: LayoutImage[] = [];
  private fingerprints: Fingerprint[] = [];
  private problems: string[] = [];
  private scanned: Promise<void> | undefined;
  private checkedAt = 0;

  constructor(options: { sources: readonly string[]; archives: BuildOnceDirs; logger: Logger }) {
    this.sources = options.sources;
    this.archives = options.archives;
    this.logger = options.logger;
  }

  /** The image answering to a normalized name (or manifest digest), rescanning when needed. */
  async find(name: string | undefined, digest: string | undefined): Promise<LayoutImage | undefined> {
    const match = (): LayoutImage | undefined =>
      this.images.find((image) => (name === undefined || image.names.includes(name)) && (digest === undefined || image.manifest.digest === digest));
    await this.fresh();
    const found = match();
    if (found) return found;
    await this.rescan();
    return match();
  }

  /** The layout dir for an OCI archive, extracting it on first use. */
  async archiveLayout(archive: string): Promise<string> {
    const real = await realpath(archive);
    const info = await stat(real);
    const key = createHash("sha256").update(`${real}\0${info.size}\0${info.mtimeMs}`).digest("hex").slice(0, 32);
    const built = await this.archives.ensure(key, (temp) => extractTarFile(real, temp, { layer: false, preserveOwner: false }));
    if (built) this.logger.info("extracted OCI archive", { archive: real });
    return this.archives.pathOf(key);
  }

  /** A line for probes and error messages: where images come from, and what is there. */
  async describe(): Promise<string> {
    await this.fresh();
    if (this.sources.length === 0) return "no --images configured";
    const names = [...new Set(this.images.flatMap((image) => image.names))];
    const problems = this.problems.length > 0 ? `; ${this.problems.join("; ")}` : "";
    return `${names.length} image name(s) in ${this.sources.join(", ")}${names.length ? ` (${names.slice(0, 8).join(", ")}${names.length > 8 ? ", ..." : ""})` : ""}${problems}`;
  }

  private async fresh(): Promise<void> {
    if (!this.scanned) return this.rescan();
    await this.scanned;
    if (Date.now() - this.checkedAt < STALE_CHECK_MS) return;
    this.checkedAt = Date.now();
    if (await this.stale()) await this.rescan();
  }

  private async stale(): Promise<boolean> {
    for (const known of this.fingerprints) {
      const now = await fingerprint(known.file);
      if (!now || now.mtimeMs !== known.mtimeMs || now.size !== known.size) return true;
    }
    return false;
  }

  private rescan(): Promise<void> {
    const scan = this.scan();
    this.scanned = scan;
    return scan;
  }

  private async scan(): Promise<void> {
    const images: LayoutImage[] = [];
    const fingerprints: Fingerprint[] = [];
    const problems: string[] = [];
    const addLayout = async (layout: string, label: string, fingerprintFile: string): Promise<void> => {
      try {
        images.push(...(await readLayout(layout, label)));
        const print = await fingerprint(fingerprintFile);
        if (print) fingerprints.push(print);
      } catch (error) {
        problems.push(`${layout}: ${(error as Error).message}`);
      }
    };
    const search = async (dir: string, depth: number): Promise<void> => {
      if (await isLayout(dir)) return addLayout(dir, basename(dir), join(dir, "index.json"));
      if (depth >= SEARCH_DEPTH) return;
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        if (entry.isDirectory() && !entry.name.startsWith(".") && entry.name !== "blobs") await search(join(dir, entry.name), depth + 1);
      }
    };
    for (const source of this.sources) {
      const info = await stat(source).catch(() => undefined);
      if (!info) {
        problems.push(`${source} does not exist`);
      } else if (info.isFile()) {
        try {
          await addLayout(await this.archiveLayout(source), archiveLabel(source), source);
        } catch (error) {
          problems.push(`${source}: not an OCI archive (${(error as Error).message})`);
        }
      } else if (info.isDirectory()) {
        await search(source, 0);
      }
    }
    this.images = images;
    this.fingerprints = fingerprints;
    this.problems = problems;
    if (problems.length > 0) this.logger.warn("some --images could not be read", { problems });
  }
}
