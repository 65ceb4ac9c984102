/** Builds small OCI image layouts for tests: layers given as tar entries, written with real digests. */
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import tarStream from "tar-stream";

export interface LayerEntry {
  name: string;
  type?: "file" | "directory" | "symlink" | "link";
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
}

async function tarOf(entries: LayerEntry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on("end", () => resolve());
    pack.on("error", reject);
  });
  for (const entry of entries) {
    const type = entry.type ?? "file";
    const mode = entry.mode ?? (type === "directory" ? 0o755 : 0o644);
    if (type === "file") pack.entry({ name: entry.name, mode, type }, entry.content ?? "");
    else pack.entry({ name: entry.name, mode, type, linkname: entry.linkname ?? "" });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function blob(layout: string, bytes: Buffer): Promise<string> {
  const hex = createHash("sha256").update(bytes).digest("hex");
  await writeFile(join(layout, "blobs", "sha256", hex), bytes);
  return `sha256:${hex}`;
}

/** Writes an OCI layout at `layout` holding one image named `name` with these layers (gzip). */
export async function writeLayout(layout: string, name: string, layers: LayerEntry[][], env: string[] = ["PATH=/bin"]): Promise<void> {
  await mkdir(join(layout, "blobs", "sha256"), { recursive: true });
  const layerDescriptors = [];
  const diffIds = [];
  for (const entries of layers) {
    const tar = await tarOf(entries);
    diffIds.push(`sha256:${createHash("sha256").update(tar).digest("hex")}`);
    const gz = gzipSync(tar);
    layerDescriptors.push({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: await blob(layout, gz), size: gz.length });
  }
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: { Env: env }, rootfs: { type: "layers", diff_ids: diffIds } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: await blob(layout, config), size: config.length },
      layers: layerDescriptors,
    }),
  );
  const manifestDigest = await blob(layout, manifest);
  await writeFile(
    join(layout, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: manifestDigest, size: manifest.length, annotations: { "io.containerd.image.name": name } }],
    }),
  );
  await writeFile(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
}
