/** `airlock version` (and `airlock --version`): the release, the executor protocol, the commit. */
import { buildInfo, versionLabel } from "../../common/build-info.ts";
import { MIN_EXECUTOR_PROTOCOL, servedProtocols } from "../../protocol/index.ts";
import { println, type CliIO } from "../context.ts";

export function versionCommand(flags: { json?: boolean }, io: CliIO): number {
  const info = buildInfo();
  if (flags.json) {
    const json = { version: info.version, protocolVersion: info.protocolVersion, minExecutorProtocol: MIN_EXECUTOR_PROTOCOL, commit: info.commit ?? null, dirty: info.dirty, node: process.version };
    println(io.stdout, JSON.stringify(json, null, 2));
    return 0;
  }
  println(io.stdout, `airlock ${versionLabel(info)}`);
  println(io.stdout, `executor protocol ${info.protocolVersion} (a coordinator of this version serves executors of protocol ${servedProtocols()})`);
  println(io.stdout, `commit ${info.commit ? `${info.commit}${info.dirty ? " (with uncommitted changes)" : ""}` : "unknown (not built from a git checkout)"}`);
  println(io.stdout, `node ${process.version}`);
  return 0;
}
