/** Path helpers over a tree's "/"-separated relative paths ("." is the top). */
export const parentOf = (dir: string): string => (dir.includes("/") ? dir.slice(0, dir.lastIndexOf("/")) : ".");
export const join = (dir: string, name: string): string => (dir === "." ? name : `${dir}/${name}`);

/** Directories no project root is looked for in: dependencies, environments, VCS data. */
const IGNORED = new Set(["node_modules", ".git", ".venv", "venv", "site-packages", ".tox", "__pycache__"]);
export const ignored = (path: string): boolean => path.split("/").some((part) => IGNORED.has(part));

/** True when `dir` is `ancestor` or inside it. */
export const within = (dir: string, ancestor: string): boolean => ancestor === "." || dir === ancestor || dir.startsWith(`${ancestor}/`);

/** The path from `dir` up to its ancestor `ancestor` ("../.."). */
export function upTo(dir: string, ancestor: string): string {
  const depth = (path: string): number => (path === "." ? 0 : path.split("/").length);
  return Array<string>(depth(dir) - depth(ancestor)).fill("..").join("/");
}
