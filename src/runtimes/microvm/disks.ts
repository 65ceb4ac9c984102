/**
 * ext4 disk images for VMs, made with e2fsprogs' mkfs.ext4 (never mounted on the host): the
 * job's workspace disk and scratch disk, and the read-only disks of step images. Files are
 * sparse: a disk costs host space only for what is written to it.
 */
import { existsSync } from "node:fs";
import { open } from "node:fs/promises";
import { runChecked } from "../../common/exec.ts";
import { coerceError, SandboxError } from "../../protocol/index.ts";

export const MKFS = "mkfs.ext4";

/**
 * No journal (the VM is thrown away, never recovered), no metadata checksums (one kernel module
 * less in the guest), inode tables left for the kernel not to zero (mounted with noinit_itable).
 */
const FEATURES = ["-O", "^has_journal,^metadata_csum", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-m", "0", "-q", "-F", "-t", "ext4"];

export interface DiskOptions {
  path: string;
  sizeBytes: number;
  /** Copy this directory's tree into the new file system. */
  from?: string | undefined;
  /** At least this many inodes. */
  inodes?: number | undefined;
  label: string;
  hostPath: string;
}

/** Creates (or empties) a sparse file of `sizeBytes`. */
export async function createSparse(path: string, sizeBytes: number): Promise<void> {
  const handle = await open(path, "w", 0o600);
  try {
    await handle.truncate(sizeBytes);
  } finally {
    await handle.close();
  }
}

/** Writes an ext4 file system into `path`, in place (a VM may have the file open already). */
export async function makeExt4(options: DiskOptions): Promise<void> {
  if (!existsSync(options.path)) await createSparse(options.path, options.sizeBytes);
  const args = [...FEATURES, "-L", options.label];
  if (options.inodes) args.push("-N", String(options.inodes));
  if (options.from) args.push("-d", options.from);
  args.push(options.path);
  try {
    await runChecked(MKFS, args, { env: { PATH: options.hostPath, LANG: "C" } });
  } catch (error) {
    const message = coerceError(error).message;
    if (/Could not allocate block|No space left|inode/i.test(message) && options.from) {
      throw new DiskTooSmall(`${options.from} does not fit in a disk of ${Math.round(options.sizeBytes / 1024 / 1024)} MiB`);
    }
    throw new SandboxError(`${MKFS} failed for ${options.label}: ${message}`);
  }
}

export class DiskTooSmall extends SandboxError {}
