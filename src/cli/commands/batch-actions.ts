/** The server-side `airlock batch` subcommands (being written). */
import { AirlockError } from "../../protocol/index.ts";
import type { ApiClient } from "../api-client.ts";
import type { CliIO } from "../context.ts";

const pending = (): never => {
  throw new AirlockError("internal", "not implemented yet");
};
export async function previewCommand(_client: ApiClient, _file: string, _options: { detach: boolean }, _io: CliIO): Promise<number> {
  return pending();
}
export async function listCommand(_client: ApiClient, _io: CliIO): Promise<number> {
  return pending();
}
export async function showCommand(_client: ApiClient, _name: string, _options: { json: boolean; version: string | undefined }, _io: CliIO): Promise<number> {
  return pending();
}
export async function diffCommand(_client: ApiClient, _name: string, _options: { repository: string | undefined; workspace: string | undefined }, _io: CliIO): Promise<number> {
  return pending();
}
export async function logsCommand(_client: ApiClient, _name: string, _options: { repository: string; workspace: string | undefined }, _io: CliIO): Promise<number> {
  return pending();
}
export async function retryCommand(_client: ApiClient, _name: string, _options: { failed: boolean; detach: boolean }, _io: CliIO): Promise<number> {
  return pending();
}
export async function cancelCommand(_client: ApiClient, _name: string, _io: CliIO): Promise<number> {
  return pending();
}
export async function applyCommand(_client: ApiClient, _name: string, _options: { repositories: string[] | undefined }, _io: CliIO): Promise<number> {
  return pending();
}
