/** `airlock executor install microvm` and `airlock executor test-vm`. */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { createLogger } from "../../common/logger.ts";
import { resolveRuntimeHostConfig } from "../../executor/config.ts";
import { ValidationError } from "../../protocol/index.ts";
import { microvmOptions, sandboxLabels, stepScript, type StepOutcome } from "../../runtimes/index.ts";
import { chooseAccelerator } from "../../runtimes/microvm/accel.ts";
import { installGuest } from "../../runtimes/microvm/guest.ts";
import { MicroVmRuntime } from "../../runtimes/microvm/index.ts";
import type { MicroVmSandbox } from "../../runtimes/microvm/sandbox.ts";
import { println, type CliIO } from "../context.ts";

export async function installCommand(target: string, flags: Record<string, unknown>, io: CliIO): Promise<number> {
  if (target !== "microvm") throw new ValidationError(`install: unknown target "${target}" (known: microvm)`);
  const config = resolveRuntimeHostConfig(flags, io.env);
  const logger = createLogger({ level: config.logLevel, format: config.logFormat });
  const started = Date.now();
  const { guest, built } = await installGuest({ dataDir: config.dataDir, kernel: config.kernel, logger, force: Boolean(flags.force) });
  println(io.stdout, `${built ? "built" : "up to date:"} microVM guest in ${join(config.dataDir, "microvm", "guest")}${built ? ` (${Date.now() - started} ms)` : ""}`);
  println(io.stdout, `  kernel  ${guest.source} (${guest.kernelVersion}), booted as ${guest.bootFormat === "pvh-elf" ? "an uncompressed PVH ELF" : "a compressed bzImage"}`);
  println(io.stdout, `  initrd  ${guest.initrd} (agent compiled with ${guest.agentCompiler}; ${guest.modules.length} modules)`);
  const accelerator = await chooseAccelerator(config.dataDir, guest, logger);
  println(io.stdout, `  accel   ${accelerator.detail}`);
  return 0;
}

function describeOutcome(outcome: StepOutcome): string {
  if (outcome.message) return outcome.message;
  return outcome.exitCode === null ? "killed" : `exit code ${outcome.exitCode}`;
}

export async function testVmCommand(flags: Record<string, unknown>, command: string[], io: CliIO): Promise<number> {
  const config = resolveRuntimeHostConfig(flags, io.env);
  const logger = createLogger({ level: flags.logLevel ? config.logLevel : "warn", format: config.logFormat });
  const runtime = new MicroVmRuntime(microvmOptions({ path: config.hostPath, dataDir: config.dataDir, images: config.images, dockerHost: config.dockerHost, defaultImage: config.defaultImage, logger }));
  const image = typeof flags.image === "string" ? flags.image : config.defaultImage;
  const root = await mkdtemp(join(tmpdir(), "airlock-test-vm-"));
  const started = Date.now();
  let sandbox: MicroVmSandbox | undefined;
  try {
    const jobId = 0;
    const workspace = join(root, "workspace");
    await mkdir(workspace);
    sandbox = (await runtime.createSandbox(
      { jobId, attempt: 1, executorName: "test-vm", workspace, scratchDir: join(root, "sandbox"), resources: {}, labels: sandboxLabels("test-vm", jobId, 1), logger },
      new AbortController().signal,
    )) as MicroVmSandbox;
    println(io.stderr, `VM booted in ${Date.now() - started} ms (${sandbox.accelerator.detail}); image ${image}`);
    const box = sandbox;
    const runLine = async (line: string): Promise<StepOutcome> => {
      const abort = new AbortController();
      const onInt = (): void => abort.abort();
      process.once("SIGINT", onInt);
      const stepStarted = Date.now();
      try {
        const outcome = await box.exec(
          { step: { key: "test-vm", image, commands: [line], dir: ".", env: {} }, env: {}, script: stepScript([line]) },
          { write: (chunk, stream) => (stream === "stdout" ? io.stdout : io.stderr).write(chunk) },
          abort.signal,
        );
        println(io.stderr, `[${describeOutcome(outcome)}; ${Date.now() - stepStarted} ms]`);
        return outcome;
      } finally {
        process.removeListener("SIGINT", onInt);
      }
    };
    if (command.length > 0) {
      const outcome = await runLine(command.join(" "));
      return outcome.exitCode ?? 1;
    }
    println(io.stderr, "each line runs as one step in the VM, on /work (kept between lines); end with Ctrl-D");
    const lines = createInterface({ input: process.stdin, output: process.stderr, prompt: "airlock-vm# " });
    lines.prompt();
    for await (const line of lines) {
      if (line.trim()) await runLine(line);
      lines.prompt();
    }
    return 0;
  } finally {
    await sandbox?.destroy().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
}
