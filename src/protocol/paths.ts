/**
 * Workspace-relative paths as they appear in job specs (`files`, `outputs.paths`, step `dir`).
 * This check is lexical; the executor checks again on disk (symlinks) before it touches a path.
 */
import { z } from "zod";

/** True when `text` holds a C0 control character or DEL (NUL, newlines, terminal escapes). */
export function hasControlCharacter(text: string): boolean {
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** Why a workspace-relative path is refused, or undefined when it is acceptable. */
export function workspacePathProblem(path: string): string | undefined {
  if (path.length === 0) return "is empty";
  if (path.length > 1024) return "is longer than 1024 characters";
  // Control characters (NUL, newlines, terminal escapes) have no place in a file name a job names.
  if (path.includes("\0")) return "contains a NUL byte";
  if (hasControlCharacter(path)) return "contains a control character";
  if (path.includes("\\")) return "contains a backslash";
  if (path.startsWith("/")) return "is absolute; write it relative to the workspace";
  const parts = path.split("/");
  if (parts.includes("..")) return "contains '..' and could leave the workspace";
  if (parts[0] === ".git" || parts.some((part) => part.toLowerCase() === ".git")) return "points into .git";
  return undefined;
}

/** Collapses "a/./b/" into "a/b"; "." stays ".". Only for paths that passed workspacePathProblem. */
export function normalizeWorkspacePath(path: string): string {
  const parts = path.split("/").filter((part) => part !== "" && part !== ".");
  return parts.length === 0 ? "." : parts.join("/");
}

export const WorkspacePath = z.string().transform((value, ctx) => {
  const problem = workspacePathProblem(value);
  if (problem) {
    ctx.addIssue({ code: "custom", message: `path ${JSON.stringify(value)} ${problem}` });
    return z.NEVER;
  }
  return normalizeWorkspacePath(value);
});

/** A file path inside the workspace: like WorkspacePath but the workspace root itself is not a file. */
export const WorkspaceFilePath = WorkspacePath.refine((value) => value !== ".", {
  message: "must name a file inside the workspace, not the workspace itself",
});
