/**
 * The egress forwarder (forwarder/forwarder.c): a small static program a sandbox's steps run
 * under, relaying their proxy and DNS ports on 127.0.0.1 to the job's egress gateway, and, as
 * `--stdio`, QEMU's end of a microVM's guest forwarding. See forwarder.c for its command line.
 *
 * `ensureForwarder` compiles it once per source into <data>/egress/forwarder-<hash of the
 * sources>. Concurrent callers are safe: in this process they share one build; across processes
 * each builds under a temporary name and renames it into place (the same bytes either way).
 */
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../common/logger.ts";
import { compileStatic, STATIC_FLAGS } from "../common/compile.ts";
import { UnavailableError } from "../protocol/index.ts";

const FORMAT = "airlock-forwarder-1";

/** The forwarder's C sources (forwarder/*.c and *.h), shipped beside this module. */
export async function forwarderSources(): Promise<string[]> {
  const dir = fileURLToPath(new URL("./forwarder/", import.meta.url));
  const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => /\.[ch]$/.test(name)).sort();
  if (!names.includes("forwarder.c")) throw new UnavailableError(`the egress forwarder's sources are missing from ${dir}`);
  return names.map((name) => join(dir, name));
}

async function sourceHash(sources: readonly string[]): Promise<string> {
  const hash = createHash("sha256").update(FORMAT).update(STATIC_FLAGS.join(" "));
  for (const file of sources) hash.update(`\0${basename(file)}\0`).update(await readFile(file));
  return hash.digest("hex").slice(0, 16);
}

const builds = new Map<string, Promise<string>>();

async function build(path: string, sources: readonly string[], logger: Logger): Promise<string> {
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isFile()) return path;
  await mkdir(join(path, ".."), { recursive: true });
  const temp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    const started = Date.now();
    const compiler = await compileStatic("the egress forwarder", sources, temp);
    await chmod(temp, 0o755);
    await rename(temp, path);
    logger.info("built the egress forwarder", { path, compiler, ms: Date.now() - started });
    return path;
  } finally {
    await rm(temp, { force: true });
  }
}

/** The path of the forwarder built from the current sources, compiling it when it is not there yet. */
export async function ensureForwarder(dataDir: string, logger: Logger): Promise<string> {
  const sources = await forwarderSources();
  const path = join(dataDir, "egress", `forwarder-${await sourceHash(sources)}`);
  let pending = builds.get(path);
  if (!pending) {
    pending = build(path, sources, logger);
    builds.set(path, pending);
    pending.catch(() => builds.delete(path));
  }
  return pending;
}
