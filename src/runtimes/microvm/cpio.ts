/** A writer for the cpio "newc" format, the one the kernel unpacks as an initramfs. */

export interface CpioEntry {
  name: string;
  /** Full st_mode: type bits and permissions (0o100755 a file, 0o40755 a dir, 0o120777 a link, 0o20600 a char device). */
  mode: number;
  data?: Uint8Array | undefined;
  /** For device nodes. */
  rdev?: { major: number; minor: number } | undefined;
}

function field(value: number): string {
  return value.toString(16).padStart(8, "0");
}

function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const push = (entry: CpioEntry): void => {
    const name = Buffer.from(`${entry.name}\0`);
    const data = entry.data ?? new Uint8Array(0);
    const header =
      "070701" +
      [ino++, entry.mode, 0, 0, 1, 0, data.byteLength, 0, 0, entry.rdev?.major ?? 0, entry.rdev?.minor ?? 0, name.byteLength, 0].map(field).join("");
    const head = Buffer.concat([Buffer.from(header, "ascii"), name]);
    parts.push(head, pad4(head.byteLength), Buffer.from(data), pad4(data.byteLength));
  };
  for (const entry of entries) push(entry);
  push({ name: "TRAILER!!!", mode: 0 });
  return Buffer.concat(parts);
}
