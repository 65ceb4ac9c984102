/**
 * Builds the web UI into web/dist with esbuild: one ES module bundle and one stylesheet, named by
 * content hash (so the coordinator can let browsers cache them for good), the icon, and an
 * index.html that loads them. Run by `npm run build`; the coordinator serves web/dist.
 */
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, "dist");
const assets = join(out, "assets");

rmSync(out, { recursive: true, force: true });
mkdirSync(assets, { recursive: true });

const result = await build({
  entryPoints: { app: join(root, "src", "main.tsx") },
  bundle: true,
  format: "esm",
  target: ["es2022", "chrome111", "firefox115", "safari16.4"],
  outdir: assets,
  entryNames: "[name]-[hash]",
  minify: true,
  sourcemap: "linked",
  metafile: true,
  jsx: "automatic",
  jsxImportSource: "preact",
  tsconfig: join(root, "src", "tsconfig.json"),
  charset: "utf8",
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((path) => join(process.cwd(), path));
const pick = (extension: string): string => {
  const found = outputs.find((path) => path.endsWith(extension) && !path.endsWith(".map"));
  if (!found) throw new Error(`esbuild wrote no ${extension} file`);
  return `/${relative(out, found).split("\\").join("/")}`;
};
const js = pick(".js");
const css = pick(".css");
const html = readFileSync(join(root, "src", "index.html"), "utf8").replace("{{js}}", js).replace("{{css}}", css);
writeFileSync(join(out, "index.html"), html);
copyFileSync(join(root, "src", "favicon.svg"), join(assets, "favicon.svg"));

for (const path of [js, css]) {
  const bytes = readFileSync(join(out, path));
  console.log(`web/dist${path}: ${(bytes.length / 1024).toFixed(1)} KiB (${(gzipSync(bytes).length / 1024).toFixed(1)} KiB gzipped)`);
}
