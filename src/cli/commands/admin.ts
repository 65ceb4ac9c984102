/** `airlock repo add|list`, `airlock executors`, `airlock queues`. */
import { formatDuration } from "../../protocol/index.ts";
import type { ApiClient } from "../api-client.ts";
import { println, table, type CliIO } from "../context.ts";

export async function repoAddCommand(client: ApiClient, name: string, source: string, io: CliIO): Promise<number> {
  const repo = await client.addRepository(name, source);
  println(io.stdout, `repository ${repo.name} mirrored from ${repo.source}`);
  return 0;
}

export async function repoListCommand(client: ApiClient, io: CliIO): Promise<number> {
  const rows = [["NAME", "HEAD", "SOURCE"]];
  for (const repo of await client.repositories()) rows.push([repo.name, repo.headCommit?.slice(0, 12) ?? "-", repo.source]);
  println(io.stdout, table(rows));
  return 0;
}

export async function executorsCommand(client: ApiClient, io: CliIO): Promise<number> {
  const rows = [["NAME", "RUNTIME", "QUEUES", "VERSION", "PROTOCOL", "LAST HEARTBEAT", "RUNNING"]];
  const now = Date.now();
  for (const executor of await client.executors()) {
    rows.push([
      executor.name,
      executor.runtime,
      executor.queues.join(","),
      executor.version,
      String(executor.protocolVersion),
      `${formatDuration(now - Date.parse(executor.lastHeartbeatAt))} ago${executor.alive ? "" : " (gone)"}`,
      executor.runningJobIds.join(",") || "-",
    ]);
  }
  println(io.stdout, table(rows));
  return 0;
}

export async function queuesCommand(client: ApiClient, io: CliIO): Promise<number> {
  const rows = [["QUEUE", "QUEUED", "PROCESSING", "OLDEST WAIT"]];
  for (const queue of await client.queues()) {
    rows.push([queue.name, String(queue.queued), String(queue.processing), queue.oldestWaitMs === null ? "-" : formatDuration(queue.oldestWaitMs)]);
  }
  println(io.stdout, table(rows));
  return 0;
}
