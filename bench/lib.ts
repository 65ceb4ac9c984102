/** Shared pieces of the benchmarks: percentiles, tables, a byte-counting proxy, process RSS. */
import { readFileSync } from "node:fs";
import { spawn } from "node:child_process";
import { createConnection, createServer, type Server, type Socket } from "node:net";

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Prints a Markdown table. */
export function printTable(headers: string[], rows: (string | number)[][]): void {
  const cells = [headers, ...rows.map((row) => row.map((cell) => (typeof cell === "number" ? formatNumber(cell) : cell)))];
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => String(row[column] ?? "").length)));
  const line = (row: (string | number)[]) => `| ${row.map((cell, column) => String(cell).padEnd(widths[column] ?? 0)).join(" | ")} |`;
  console.log(line(cells[0] as string[]));
  console.log(`| ${widths.map((width) => "-".repeat(width)).join(" | ")} |`);
  for (const row of cells.slice(1)) console.log(line(row));
}

export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (Math.abs(value) >= 100) return value.toFixed(0);
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return kib / 1024;
}

/** A loopback TCP proxy that counts the bytes each way. */
export async function countingProxy(targetPort: number): Promise<{ port: number; sent: () => number; received: () => number; reset: () => void; close: () => Promise<void> }> {
  let upstream = 0;
  let downstream = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const target = createConnection({ host: "127.0.0.1", port: targetPort });
    sockets.add(client).add(target);
    client.on("data", (chunk: Buffer) => {
      upstream += chunk.length;
      target.write(chunk);
    });
    target.on("data", (chunk: Buffer) => {
      downstream += chunk.length;
      client.write(chunk);
    });
    client.on("end", () => target.end());
    target.on("end", () => client.end());
    client.on("error", () => target.destroy());
    target.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : 0,
    sent: () => upstream,
    received: () => downstream,
    reset: () => {
      upstream = 0;
      downstream = 0;
    },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/**
 * The bare figure for no-op jobs: `count` runs of `sh -c true` (the executor's step wrapper),
 * `concurrency` at a time, spawned by a fresh Node process. Fresh, because a fork's cost grows with
 * the forking process's memory (page tables, copy-on-write): spawned from the bench's own process,
 * which has just handled a 50,000-file repository, the same loop ran at half the rate.
 */
export async function bareShellRun(count: number, concurrency: number): Promise<{ rate: number; nodeMs: number; shMs: number }> {
  const script = `
    const { spawn } = require("node:child_process");
    const { readFileSync } = require("node:fs");
    const [count, concurrency] = [${count}, ${concurrency}];
    const cpu = () => { const f = readFileSync("/proc/self/stat", "utf8").slice(readFileSync("/proc/self/stat", "utf8").lastIndexOf(")") + 2).split(" ").map(Number); return { self: (f[11] + f[12]) * 10, children: (f[13] + f[14]) * 10 }; };
    (async () => {
      const before = cpu();
      const started = performance.now();
      let next = 0;
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < count) {
          next += 1;
          await new Promise((resolve) => spawn("/bin/sh", ["-c", "set -e\\ntrue\\n"], { stdio: "ignore" }).on("exit", resolve));
        }
      }));
      const seconds = (performance.now() - started) / 1000;
      const after = cpu();
      process.stdout.write(JSON.stringify({ rate: count / seconds, nodeMs: (after.self - before.self) / count, shMs: (after.children - before.children) / count }));
    })();
  `;
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let text = "";
    child.stdout.on("data", (chunk: Buffer) => (text += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(text) : reject(new Error(`the bare spawn loop exited ${code}`))));
  });
  return JSON.parse(output) as { rate: number; nodeMs: number; shMs: number };
}

export async function bareShellRate(count: number, concurrency: number): Promise<number> {
  return (await bareShellRun(count, concurrency)).rate;
}
