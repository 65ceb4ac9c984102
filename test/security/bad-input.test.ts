/**
 * Hostile input at every door, as one table (input x answer, printed): malformed and hostile
 * JSON and YAML (alias bombs, deep nesting, oversize bodies, 10,000 steps), control characters
 * in names, argument and transport injection into git (`repo add` with ext::, file://, option-like
 * URLs, names and commits), log appends at bad offsets. Each must get its 4xx naming the field
 * (or the body), and leave the stored state as it was and nothing planted on the host (a log
 * append over bytes already stored is answered but skipped, as retries are). The cases
 * test/e2e/bad-input.test.ts and test/batch/bad-input.test.ts already cover are not repeated.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { http, makeRepo, startCluster, type Cluster } from "../helpers/cluster.ts";

interface Case {
  name: string;
  method?: string;
  path: string;
  type?: string;
  body?: string | Buffer;
  /** As the job token of a live attempt (else the API token). */
  asJob?: boolean;
  status: number;
  /** The error's field, or a pattern its message must match. */
  field?: string;
  message?: RegExp;
}

const STEP = { commands: ["true"] };

/** A YAML billion laughs: 9^9 strings from a few hundred bytes. */
function aliasBomb(): string {
  const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  const names = "abcdefghi";
  for (let index = 1; index < names.length; index += 1) {
    const previous = names[index - 1] as string;
    lines.push(`${names[index] as string}: &${names[index] as string} [${Array(9).fill(`*${previous}`).join(",")}]`);
  }
  return `${lines.join("\n")}\n`;
}

function nestedJson(depth: number): string {
  return `${"[".repeat(depth)}${"]".repeat(depth)}`;
}

describe("hostile input", { timeout: 120_000 }, () => {
  let cluster: Cluster;
  let url: string;
  let planted: string;
  let job: { id: number; token: string };

  before(async () => {
    cluster = await startCluster({ executors: 0, coordinatorArgs: ["--max-body-size", "1m", "--max-log-chunk", "64k", "--lease-timeout", "10m"] });
    url = cluster.coordinator.url;
    planted = join(cluster.dir, "planted");
    await cluster.api.addRepository("acme/one", await makeRepo(join(cluster.dir, "one"), { "a.txt": "a\n" }));
    await cluster.api.submit({ queue: "manual", repository: "acme/one", isolation: "none", steps: [{ key: "one", commands: ["true"] }] });
    const executor = { authorization: `token-executor ${cluster.coordinator.executorToken}`, "content-type": "application/json" };
    const identity = { executorName: "manual", hostname: "h", version: "t", runtime: "shell", isolation: ["none"], network: "internet", queues: ["manual"], waitMs: 0 };
    const claimed = await http(`${url}/.executors/dequeue`, { method: "POST", headers: executor, body: JSON.stringify(identity) });
    assert.equal(claimed.status, 200, claimed.text);
    job = claimed.body as { id: number; token: string };
    const first = await http(`${url}/.executors/jobs/${job.id}/logs/one?offset=0`, { method: "POST", headers: { authorization: `Bearer ${job.token}`, "content-type": "application/octet-stream" }, body: "hello" });
    assert.equal(first.status, 200, first.text);
  });
  after(async () => {
    await cluster.close();
  });

  async function snapshot(): Promise<string> {
    const jobs = await cluster.api.listJobs({ limit: 500 });
    const details = await Promise.all(jobs.map((summary) => cluster.api.getJob(summary.id)));
    const log = (await cluster.api.readLog(job.id, "one")).toString("base64");
    return JSON.stringify({ repositories: await cluster.api.repositories(), jobs: details, batches: await cluster.api.listBatches(), log });
  }

  it("refuses each with a 4xx naming what is wrong, changing nothing", async () => {
    const jobBody = (spec: Record<string, unknown>) => JSON.stringify({ isolation: "none", steps: [STEP], ...spec });
    const repo = (name: string, source: string) => JSON.stringify({ name, source });
    const source = join(cluster.dir, "one");
    const batch = (text: string) => JSON.stringify({ spec: text });
    const cases: Case[] = [
      // JSON and YAML bodies
      { name: "JSON cut short", path: "/api/jobs", body: '{"steps": [', status: 400, message: /not valid JSON/ },
      { name: "JSON with trailing garbage", path: "/api/jobs", body: `${jobBody({})} trailing`, status: 400, message: /not valid JSON/ },
      { name: "JSON nested 100,000 deep", path: "/api/jobs", body: `{"steps":[{"commands":["x"],"env":{"A":${nestedJson(100_000)}}}]}`, status: 400, field: "steps.0.env.A" },
      { name: "JSON over the body limit", path: "/api/jobs", body: jobBody({ files: { "big.txt": { content: "x".repeat(1_100_000) } } }), status: 413, message: /larger/ },
      { name: "JSON with 10,000 steps", path: "/api/jobs", body: jobBody({ steps: Array.from({ length: 10_000 }, () => STEP) }), status: 400, field: "steps" },
      { name: "JSON __proto__ key", path: "/api/jobs", body: '{"__proto__": {"isolation": "none"}, "steps": [{"commands": ["x"]}]}', status: 400 },
      { name: "YAML malformed job", path: "/api/jobs", type: "application/yaml", body: "steps: [unclosed\n", status: 400, message: /not valid YAML/ },
      { name: "YAML alias bomb job", path: "/api/jobs", type: "application/yaml", body: `${aliasBomb()}steps: [{commands: [x]}]\n`, status: 400, message: /YAML/ },
      { name: "YAML alias bomb batch", path: "/api/batches", type: "application/yaml", body: `name: bomb\non: [acme/one]\nisolation: none\nsteps: [{run: x}]\nx-bomb:\n${aliasBomb().replace(/^/gm, "  ")}`, status: 400, message: /YAML|alias/ },
      { name: "YAML alias bomb batch in JSON", path: "/api/batches", body: batch(`${aliasBomb()}name: bomb\n`), status: 400, message: /YAML|alias/ },
      { name: "YAML nested 10,000 deep", path: "/api/batches", type: "application/yaml", body: `name: deep\non: [acme/one]\nsteps: [{run: x}]\nx: ${nestedJson(10_000)}\n`, status: 400 },
      { name: "YAML batch with 10,000 steps", path: "/api/batches", type: "application/yaml", body: `name: many\non: [acme/one]\nisolation: none\nsteps:\n${"  - run: x\n".repeat(10_000)}`, status: 400, field: "steps" },
      // Control characters in names
      { name: "step key with BEL", path: "/api/jobs", body: jobBody({ steps: [{ key: "a\u0007b", commands: ["x"] }] }), status: 400, field: "steps.0.key" },
      { name: "queue with ESC[2J", path: "/api/jobs", body: jobBody({ queue: "q\u001b[2J" }), status: 400, field: "queue" },
      { name: "repository with newline", path: "/api/jobs", body: jobBody({ repository: "acme/\none" }), status: 400, field: "repository" },
      { name: "secret name with NUL", path: "/api/jobs", body: jobBody({ secrets: { "A\u0000B": "v" } }), status: 400, field: "secrets.A\u0000B" },
      { name: "env name with CR", path: "/api/jobs", body: jobBody({ steps: [{ commands: ["x"], env: { "A\rB": "v" } }] }), status: 400, field: "steps.0.env.A\rB" },
      { name: "file name with newline", path: "/api/jobs", body: jobBody({ files: { "a\nb.txt": { content: "x" } } }), status: 400, field: "files.a\nb.txt" },
      { name: "repo add name with ESC", path: "/api/repositories", body: repo("acme/\u001b[31mred", source), status: 400, field: "name" },
      { name: "batch name with newline", path: "/api/batches", type: "application/yaml", body: 'name: "a\\nb"\non: [acme/one]\nisolation: none\nsteps: [{run: x}]\n', status: 400, field: "name" },
      // Injection into git
      { name: "repo add ext:: source", path: "/api/repositories", body: repo("acme/ext", `ext::sh -c touch% ${planted}`), status: 400, field: "source" },
      { name: "repo add file:// source", path: "/api/repositories", body: repo("acme/file", `file://${source}`), status: 400, field: "source" },
      { name: "repo add --upload-pack source", path: "/api/repositories", body: repo("acme/opt", `--upload-pack=touch ${planted}`), status: 400, field: "source" },
      { name: "repo add ssh host -oProxyCommand", path: "/api/repositories", body: repo("acme/ssh", `ssh://-oProxyCommand=touch%20${planted}/x`), status: 400, field: "source" },
      { name: "repo add scp-like -oProxyCommand", path: "/api/repositories", body: repo("acme/scp", `-oProxyCommand=touch ${planted}:x`), status: 400, field: "source" },
      { name: "repo add source with newline", path: "/api/repositories", body: repo("acme/nl", `${source}\n--upload-pack=touch ${planted}`), status: 400, field: "source" },
      { name: "repo add name --help", path: "/api/repositories", body: repo("--help", source), status: 400, field: "name" },
      { name: "repo add name -c core.x", path: "/api/repositories", body: repo("-c", source), status: 400, field: "name" },
      { name: "commit --output=<file>", path: "/api/jobs", body: jobBody({ repository: "acme/one", commit: `--output=${planted}` }), status: 400, field: "commit" },
      { name: "commit -c option", path: "/api/jobs", body: jobBody({ repository: "acme/one", commit: "-cprotocol.ext.allow=always" }), status: 400, field: "commit" },
      { name: "commit with newline", path: "/api/jobs", body: jobBody({ repository: "acme/one", commit: "main\n--output=x" }), status: 400, field: "commit" },
      { name: "commit rev range", path: "/api/jobs", body: jobBody({ repository: "acme/one", commit: "main..HEAD" }), status: 400, field: "commit" },
      // Log appends at bad offsets
      { name: "log offset not a number", path: `/.executors/jobs/{job}/logs/one?offset=abc`, asJob: true, type: "application/octet-stream", body: "x", status: 400, field: "offset" },
      { name: "log offset fractional", path: `/.executors/jobs/{job}/logs/one?offset=1.5`, asJob: true, type: "application/octet-stream", body: "x", status: 400, field: "offset" },
      { name: "log offset missing", path: `/.executors/jobs/{job}/logs/one`, asJob: true, type: "application/octet-stream", body: "x", status: 400, field: "offset" },
      { name: "log offset 2^60", path: `/.executors/jobs/{job}/logs/one?offset=${2 ** 60}`, asJob: true, type: "application/octet-stream", body: "x", status: 400, field: "offset" },
      { name: "log offset 2^52, past the end", path: `/.executors/jobs/{job}/logs/one?offset=${2 ** 52}`, asJob: true, type: "application/octet-stream", body: "x", status: 409 },
      // Appends are idempotent by offset: bytes already stored are skipped, never overwritten.
      { name: "log append over stored bytes (skipped)", path: `/.executors/jobs/{job}/logs/one?offset=0`, asJob: true, type: "application/octet-stream", body: "HELLO", status: 200 },
      { name: "log key unknown", path: `/.executors/jobs/{job}/logs/nope?offset=0`, asJob: true, type: "application/octet-stream", body: "x", status: 404 },
      { name: "log key with ESC", path: `/.executors/jobs/{job}/logs/${encodeURIComponent("o\u001bne")}?offset=0`, asJob: true, type: "application/octet-stream", body: "x", status: 404 },
    ];

    const before = await snapshot();
    const rows: { name: string; status: number; field: string; verdict: string }[] = [];
    for (const item of cases) {
      const reply = await http(`${url}${item.path.replace("{job}", String(job.id))}`, {
        method: item.method ?? "POST",
        headers: {
          authorization: `Bearer ${item.asJob ? job.token : cluster.coordinator.apiToken}`,
          ...(item.body === undefined ? {} : { "content-type": item.type ?? "application/json" }),
        },
        ...(item.body === undefined ? {} : { body: item.body }),
      });
      const error = (reply.body as { error?: { field?: string; message?: string } } | undefined)?.error;
      const problems: string[] = [];
      if (reply.status !== item.status) problems.push(`status ${reply.status}, expected ${item.status}`);
      if (item.status >= 400 && !error?.message) problems.push("no error message");
      if (item.field !== undefined && error?.field !== item.field) problems.push(`field ${JSON.stringify(error?.field)}, expected ${JSON.stringify(item.field)}`);
      if (item.message && !item.message.test(error?.message ?? "")) problems.push(`message ${JSON.stringify(error?.message)} does not match ${String(item.message)}`);
      rows.push({ name: item.name, status: reply.status, field: JSON.stringify(error?.field ?? null), verdict: problems.length === 0 ? (item.status >= 400 ? "refused" : "unchanged") : `BREAKS: ${problems.join("; ")}: ${reply.text.slice(0, 200)}` });
    }
    const width = Math.max(...rows.map((row) => row.name.length));
    process.stdout.write(`\n${"input".padEnd(width)} got  field                result\n${rows.map((row) => `${row.name.padEnd(width)} ${String(row.status).padEnd(4)} ${row.field.padEnd(20)} ${row.verdict}`).join("\n")}\n\n`);
    assert.deepEqual(rows.filter((row) => row.verdict.startsWith("BREAKS")).map((row) => `${row.name}: ${row.verdict}`), []);
    assert.equal(await snapshot(), before, "nothing stored changed");
    assert.equal(existsSync(planted), false, "nothing was planted on the host");
    assert.equal((await cluster.api.getJob(job.id)).state, "processing", "the attempt holding the job token is untouched");
  });
});
