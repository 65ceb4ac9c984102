/**
 * Compiling the small static C programs Airlock ships as source (the microVM guest agent, the
 * egress forwarder): musl-gcc when installed (small binaries), else the system's cc or gcc with
 * -static. The result must run anywhere, inside a VM's initramfs or an image without a libc.
 */
import { spawn } from "node:child_process";
import { UnavailableError } from "../protocol/index.ts";

export const STATIC_COMPILERS = ["musl-gcc", "cc", "gcc"] as const;
export const STATIC_FLAGS = ["-static", "-Os", "-s"];

function attempt(compiler: string, args: string[]): Promise<{ ok: boolean; why: string }> {
  return new Promise((resolve) => {
    const child = spawn(compiler, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-4000)));
    child.on("error", (error) => resolve({ ok: false, why: error.message }));
    child.on("close", (code) => resolve({ ok: code === 0, why: stderr.trim().split("\n").slice(-2).join(" / ") || `exit ${code}` }));
  });
}

/**
 * Compiles the `.c` files among `sources` into the static executable `output`; resolves with the
 * compiler that did it. `what` names the program in the error when no compiler could.
 */
export async function compileStatic(what: string, sources: readonly string[], output: string): Promise<string> {
  const files = sources.filter((file) => file.endsWith(".c"));
  const errors: string[] = [];
  for (const compiler of STATIC_COMPILERS) {
    const result = await attempt(compiler, [...STATIC_FLAGS, "-o", output, ...files]);
    if (result.ok) return compiler;
    errors.push(`${compiler}: ${result.why}`);
  }
  throw new UnavailableError(`could not compile ${what} (install musl-tools, or gcc and libc6-dev): ${errors.join("; ")}`);
}
