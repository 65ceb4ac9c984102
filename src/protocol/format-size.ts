/**
 * Byte counts for people ("512B", "1.5MiB"). Kept apart from units.ts, which needs zod, so the web
 * UI's bundle can use it too (there with a space: "1.5 MiB").
 */
export function formatSize(bytes: number, separator = ""): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let index = 0;
  while (value >= 1024 && index < units.length - 1) {
    value /= 1024;
    index += 1;
  }
  return `${index === 0 ? value : value.toFixed(1)}${separator}${units[index]}`;
}
