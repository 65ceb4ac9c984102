/**
 * Reading kernel images: the version string of a bzImage, the ELF inside it (vmlinux), and
 * whether that ELF has a PVH entry note (then QEMU can boot it without decompression).
 */
import { spawnSync } from "node:child_process";

/** The version a bzImage names in its setup header ("6.1.0-56-amd64"), or undefined. */
export function kernelVersion(image: Buffer): string | undefined {
  if (image.length < 0x210 || image.toString("latin1", 0x202, 0x206) !== "HdrS") return undefined;
  const offset = image.readUInt16LE(0x20e) + 0x200;
  const end = image.indexOf(0, offset);
  if (offset >= image.length || end < 0) return undefined;
  return image.toString("latin1", offset, end).split(" ")[0];
}

const COMPRESSORS: { magic: Buffer; tool: string; args: string[] }[] = [
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), tool: "xz", args: ["--single-stream", "-dc"] },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), tool: "zstd", args: ["-dcq"] },
  { magic: Buffer.from([0x1f, 0x8b, 0x08]), tool: "gzip", args: ["-dcq"] },
];

/** The uncompressed ELF kernel inside a bzImage, or undefined when none could be had. */
export function decompressKernel(image: Buffer): Buffer | undefined {
  for (const { magic, tool, args } of COMPRESSORS) {
    const at = image.indexOf(magic);
    if (at < 0) continue;
    // Trailing data after the stream makes some tools exit non-zero; the output is what counts.
    const result = spawnSync(tool, args, { input: image.subarray(at), maxBuffer: 512 * 1024 * 1024 });
    const out = result.stdout as Buffer | null;
    if (out && out.length > 1024 * 1024 && out.readUInt32BE(0) === 0x7f454c46) return out;
  }
  return undefined;
}

interface ProgramHeader {
  type: number;
  offset: number;
  size: number;
}

function programHeaders(elf: Buffer): ProgramHeader[] {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return [];
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const entrySize = elf.readUInt16LE(0x36);
  const count = elf.readUInt16LE(0x38);
  const headers: ProgramHeader[] = [];
  for (let i = 0; i < count; i++) {
    const base = phoff + i * entrySize;
    if (base + 56 > elf.length) break;
    headers.push({ type: elf.readUInt32LE(base), offset: Number(elf.readBigUInt64LE(base + 8)), size: Number(elf.readBigUInt64LE(base + 32)) });
  }
  return headers;
}

/** True when a 64-bit ELF has a PT_INTERP header (it is linked dynamically). */
export function elfHasInterpreter(elf: Buffer): boolean {
  return programHeaders(elf).some((header) => header.type === 3);
}

const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/** True when the ELF carries the Xen PVH entry note QEMU needs to boot it directly. */
export function hasPvhEntry(elf: Buffer): boolean {
  for (const header of programHeaders(elf)) {
    if (header.type !== 4) continue;
    let at = header.offset;
    const end = Math.min(header.offset + header.size, elf.length);
    while (at + 12 <= end) {
      const nameSize = elf.readUInt32LE(at);
      const descSize = elf.readUInt32LE(at + 4);
      const type = elf.readUInt32LE(at + 8);
      const name = elf.toString("latin1", at + 12, at + 12 + Math.max(0, nameSize - 1));
      if (name === "Xen" && type === XEN_ELFNOTE_PHYS32_ENTRY) return true;
      at += 12 + Math.ceil(nameSize / 4) * 4 + Math.ceil(descSize / 4) * 4;
    }
  }
  return false;
}
