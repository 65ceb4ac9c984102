/**
 * Job secrets at rest and after use: sealed (AES-256-GCM) in the SQLite file and its WAL and in
 * Postgres, opened only into the executor's payload, gone from the store once the job ends, and
 * absent from every API answer, event stream, metric and log line of the coordinator. A
 * coordinator without a key refuses them unless allowed to keep them plainly; a rotation re-seals
 * them on both stores, and a coordinator lacking the key they are sealed with says so.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { startAirlock, type ManagedProcess } from "../../src/cli/local-cluster.ts";
import { run as runCommand } from "../../src/common/exec.ts";
import { createLogger } from "../../src/common/logger.ts";
import { resolveCoordinatorConfig } from "../../src/coordinator/config.ts";
import { JobSecrets } from "../../src/coordinator/secrets/job-secrets.ts";
import { keyId, readSecretKeyFile, SecretKeyError } from "../../src/coordinator/secrets/keyring.ts";
import { startCoordinator, type RunningCoordinator } from "../../src/coordinator/server.ts";
import { isTerminal, type JobView } from "../../src/protocol/index.ts";
import { baseEnv, ENTRY, makeRepo, tempDir } from "../helpers/cluster.ts";
import { dropTemplate, freshDatabase, NO_POSTGRES } from "../helpers/postgres.ts";

const SECRET = `sekr1t-${randomBytes(12).toString("hex")}`;
const REGISTRY_PASSWORD = `regpw-${randomBytes(12).toString("hex")}`;
/** Forms a leak would take besides the raw bytes. */
const FORMS = [SECRET, Buffer.from(SECRET).toString("base64"), Buffer.from(SECRET).toString("hex"), REGISTRY_PASSWORD];

function jobSpec(extra: Record<string, unknown> = {}) {
  return {
    isolation: "none",
    network: "none",
    maxAttempts: 1,
    secrets: { API_KEY: SECRET },
    registryAuth: { "registry.invalid": { username: "bot", password: REGISTRY_PASSWORD } },
    steps: [{ key: "use", commands: ['printf %s "$API_KEY" | sha256sum', 'echo "raw: $API_KEY"', 'printf %s "$API_KEY" > out.txt'] }],
    outputs: { paths: ["out.txt"] },
    ...extra,
  };
}

function assertNoSecret(where: string, data: Buffer | string): void {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
  for (const form of FORMS) assert.equal(bytes.indexOf(form), -1, `${where} holds ${form.slice(0, 12)}...`);
}

async function writeKey(path: string, mode = 0o600): Promise<string> {
  await writeFile(path, `${randomBytes(32).toString("base64")}\n`, { mode });
  await chmod(path, mode);
  return path;
}

interface Coordinator {
  running: RunningCoordinator;
  /** Everything it logged (JSON lines, debug level). */
  log(): string;
  api(method: string, path: string, body?: unknown): Promise<{ status: number; text: string; json: unknown }>;
}

async function coordinator(dataDir: string, flags: Record<string, unknown>): Promise<Coordinator> {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString("utf8"));
      callback();
    },
  });
  const config = resolveCoordinatorConfig({ data: dataDir, listen: "127.0.0.1:0", leaseTimeout: "3s", ...flags }, { PATH: process.env.PATH });
  const running = await startCoordinator(config, createLogger({ level: "debug", format: "json", destination }));
  return {
    running,
    log: () => lines.join(""),
    async api(method, path, body) {
      const response = await fetch(`${running.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${running.apiToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: response.status, text, json };
    },
  };
}

function shellExecutor(c: Coordinator, dir: string, name: string): ManagedProcess {
  return startAirlock(
    ENTRY,
    ["executor", "run", "--url", c.running.url, "--runtime", "shell", "--network", "none", "--data", join(dir, name), "--name", name, "--heartbeat-interval", "500ms", "--log-format", "json"],
    { env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: c.running.executorToken }, logFile: join(dir, `${name}.log`) },
  );
}

async function waitEnded(c: Coordinator, id: number, timeoutMs = 30_000): Promise<JobView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = (await c.api("GET", `/api/jobs/${id}`)).json as JobView;
    if (isTerminal(job.state)) return job;
    if (Date.now() > deadline) throw new Error(`job ${id} is still ${job.state}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The raw bytes of the SQLite main file, WAL and shared memory. */
function sqliteFiles(dataDir: string): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (const suffix of ["", "-wal", "-shm"]) {
    const path = join(dataDir, `airlock.db${suffix}`);
    if (existsSync(path)) files[`airlock.db${suffix}`] = readFileSync(path);
  }
  return files;
}

describe("job secrets at rest (sqlite)", () => {
  let dir: string;
  let c: Coordinator;
  let executor: ManagedProcess | undefined;
  let keyPath: string;

  before(async () => {
    dir = await tempDir("airlock-secrets-");
    keyPath = await writeKey(join(dir, "key-a"));
    c = await coordinator(join(dir, "data"), { secretsKeyFile: keyPath });
  });
  after(async () => {
    await executor?.stop(5000);
    await c.running.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("are sealed in the file and WAL, reach the step, vanish when the job ends, and show in no answer, event, metric or log", async () => {
    const submitted = await c.api("POST", "/api/jobs", jobSpec());
    assert.equal(submitted.status, 201, submitted.text);
    const id = (submitted.json as JobView).id;
    const files = sqliteFiles(join(dir, "data"));
    assert.ok(files["airlock.db-wal"] && files["airlock.db"], "the main file and the WAL were read");
    for (const [name, bytes] of Object.entries(files)) assertNoSecret(`${name} after submit`, bytes);
    const sealed = await c.running.store.secrets.forJob(id);
    assert.deepEqual(
      sealed.map((secret) => [secret.name, secret.keyId, secret.nonce.byteLength]),
      [
        ["registryAuth.registry.invalid", readSecretKeyFile(keyPath).id, 12],
        ["secrets.API_KEY", readSecretKeyFile(keyPath).id, 12],
      ],
    );

    // Follow the job's events from before it runs to its end.
    const events = fetch(`${c.running.url}/api/jobs/${id}/events`, { headers: { authorization: `Bearer ${c.running.apiToken}` } }).then((response) => response.text());
    executor = shellExecutor(c, dir, "exec-1");
    const job = await waitEnded(c, id);
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    const log = (await c.api("GET", `/api/jobs/${id}/logs/use`)).text;
    assert.ok(log.includes(createHash("sha256").update(SECRET).digest("hex")), `the step got the secret's value:\n${log}`);
    assert.match(log, /raw: \S*REDACTED/);
    assert.deepEqual(await c.running.store.secrets.forJob(id), [], "deleted once the job ended");

    const answers: Record<string, string> = {
      "job view": (await c.api("GET", `/api/jobs/${id}`)).text,
      "job list": (await c.api("GET", "/api/jobs")).text,
      "log list": (await c.api("GET", `/api/jobs/${id}/logs`)).text,
      "step log": log,
      "prepare log": (await c.api("GET", `/api/jobs/${id}/logs/prepare`)).text,
      artifacts: (await c.api("GET", `/api/jobs/${id}/artifacts`)).text,
      "out.txt": (await c.api("GET", `/api/jobs/${id}/artifacts/out.txt`)).text,
      queues: (await c.api("GET", "/api/queues")).text,
      executors: (await c.api("GET", "/api/executors")).text,
      metrics: (await c.api("GET", "/metrics")).text,
      "event stream": await events,
    };
    assert.match(answers["job view"] ?? "", /API_KEY/, "the view names the secret");
    assert.match(answers["event stream"] ?? "", /event: end/);
    assert.match(answers.metrics ?? "", /airlock_/);
    for (const [where, text] of Object.entries(answers)) assertNoSecret(where, text);
    assert.match(c.log(), /job queued/);
    assertNoSecret("coordinator log", c.log());
    assertNoSecret("executor log", readFileSync(join(dir, "exec-1.log")));
    // The executor kept the values in memory for the attempt: nothing of them under its data dir.
    const executorFiles = (await readdir(join(dir, "exec-1"), { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile());
    for (const entry of executorFiles) assertNoSecret(`executor file ${entry.name}`, readFileSync(join(entry.parentPath, entry.name)));
    for (const [name, bytes] of Object.entries(sqliteFiles(join(dir, "data")))) assertNoSecret(`${name} after the job`, bytes);
  });
});

describe("batch secrets at rest (sqlite)", () => {
  let dir: string;
  before(async () => {
    dir = await tempDir("airlock-batch-secrets-");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const batchSpec = `name: sealed\non: [acme/web]\nisolation: none\nsecrets: { API_KEY: "${SECRET}" }\nsteps:\n  - run: echo hi\n`;

  it("are sealed in the stored version and its jobs, masked in its views, and opened again for a retry", async () => {
    const keyPath = await writeKey(join(dir, "key"));
    const c = await coordinator(join(dir, "data"), { secretsKeyFile: keyPath });
    try {
      const repo = await makeRepo(join(dir, "web"), { "a.txt": "a\n" });
      assert.equal((await c.api("POST", "/api/repositories", { name: "acme/web", source: repo })).status, 201);
      const previewed = await c.api("POST", "/api/batches", { spec: batchSpec });
      assert.equal(previewed.status, 201, previewed.text);
      assertNoSecret("batch view", previewed.text);
      assert.match(previewed.text, /API_KEY/);
      for (const [name, bytes] of Object.entries(sqliteFiles(join(dir, "data")))) assertNoSecret(`${name} after a preview`, bytes);
      const jobId = ((await c.running.store.jobs.listJobs({ limit: 1 }))[0] as { id: number }).id;
      await c.api("POST", "/api/batches/sealed/cancel");
      const retried = await c.api("POST", "/api/batches/sealed/retry", {});
      assert.equal(retried.status, 200, retried.text);
      assertNoSecret("retried batch view", retried.text);
      const [latest] = await c.running.store.jobs.listJobs({ limit: 1 });
      assert.ok(latest && latest.id !== jobId, "the retry queued a new job");
      const opened = await new JobSecrets({ store: c.running.store, key: readSecretKeyFile(keyPath), allowPlaintext: false }).reveal(latest);
      assert.equal(opened.secrets.API_KEY, SECRET, "the retried job has the batch's secret");
      for (const [name, bytes] of Object.entries(sqliteFiles(join(dir, "data")))) assertNoSecret(`${name} after a retry`, bytes);
      assertNoSecret("coordinator log", c.log());
    } finally {
      await c.running.close();
    }
  });

  it("are refused, with nothing stored, by a coordinator without a key", async () => {
    const c = await coordinator(join(dir, "nokey"), {});
    try {
      assert.equal((await c.api("POST", "/api/repositories", { name: "acme/web", source: await makeRepo(join(dir, "web2"), { "a.txt": "a\n" }) })).status, 201);
      const refused = await c.api("POST", "/api/batches", { spec: batchSpec });
      assert.equal(refused.status, 400, refused.text);
      assert.match(refused.text, /secrets\.API_KEY: this coordinator refuses jobs with secrets/);
      assert.deepEqual(await c.running.store.jobs.listJobs({ limit: 5 }), []);
      assert.deepEqual(await c.running.store.batches.listBatches(5), []);
    } finally {
      await c.running.close();
    }
  });
});

describe("coordinators without a key, and key files", () => {
  let dir: string;
  before(async () => {
    dir = await tempDir("airlock-secrets-nokey-");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses jobs with secrets with a 400 naming the reason, storing nothing; accepts those without", async () => {
    const c = await coordinator(join(dir, "refuse"), {});
    try {
      for (const [what, spec] of [
        ["secrets", jobSpec({ registryAuth: undefined })],
        ["registry password", { ...jobSpec(), secrets: {} }],
      ] as const) {
        const refused = await c.api("POST", "/api/jobs", spec);
        assert.equal(refused.status, 400, `${what}: ${refused.text}`);
        const error = (refused.json as { error: { field?: string; message: string } }).error;
        assert.match(error.field ?? "", /^(secrets\.API_KEY|registryAuth\.registry\.invalid)$/, what);
        assert.match(error.message, /refuses jobs with secrets.*--secrets-key-file.*--allow-plaintext-secrets/);
      }
      assert.equal((await c.running.store.jobs.listJobs({ limit: 10 })).length, 0, "nothing stored");
      const plain = await c.api("POST", "/api/jobs", { ...jobSpec(), secrets: {}, registryAuth: undefined });
      assert.equal(plain.status, 201, plain.text);
      assertNoSecret("coordinator log", c.log());
    } finally {
      await c.running.close();
    }
  });

  it("with --allow-plaintext-secrets stores them unsealed (and still apart from the spec)", async () => {
    const c = await coordinator(join(dir, "plain"), { allowPlaintextSecrets: true });
    try {
      const accepted = await c.api("POST", "/api/jobs", jobSpec());
      assert.equal(accepted.status, 201, accepted.text);
      const id = (accepted.json as JobView).id;
      assert.deepEqual((await c.running.store.secrets.forJob(id)).map((secret) => secret.keyId), ["plaintext", "plaintext"]);
      assertNoSecret("job view", (await c.api("GET", `/api/jobs/${id}`)).text);
      await c.api("POST", `/api/jobs/${id}/cancel`);
      assert.deepEqual(await c.running.store.secrets.forJob(id), []);
    } finally {
      await c.running.close();
    }
  });

  it("refuses a key file others may read, and one that is not 256 bits, saying which", async () => {
    const open = await writeKey(join(dir, "open-key"), 0o644);
    await assert.rejects(coordinator(join(dir, "k1"), { secretsKeyFile: open }), /readable or writable by group or others \(mode 0644\).*chmod 600/);
    const groupReadable = await writeKey(join(dir, "group-key"), 0o640);
    await assert.rejects(coordinator(join(dir, "k2"), { secretsKeyFile: groupReadable }), /mode 0640/);
    const short = join(dir, "short-key");
    await writeFile(short, "too-short\n", { mode: 0o600 });
    await assert.rejects(coordinator(join(dir, "k3"), { secretsKeyFile: short }), /must hold a 256-bit key/);
    await assert.rejects(coordinator(join(dir, "k4"), { secretsKeyFile: join(dir, "missing") }), /cannot read/);
    const hex = join(dir, "hex-key");
    const bytes = randomBytes(32);
    await writeFile(hex, bytes.toString("hex"), { mode: 0o600 });
    assert.equal(readSecretKeyFile(hex).id, keyId(bytes), "a hex key reads as the same key");
  });
});

describe("rotating the secrets key", () => {
  let dir: string;
  before(async () => {
    dir = await tempDir("airlock-rotate-");
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("sqlite: re-seals stored secrets; a coordinator left with the old key errors the job naming the key", async () => {
    const keyA = await writeKey(join(dir, "a"));
    const keyB = await writeKey(join(dir, "b"));
    const dataDir = join(dir, "sqlite");
    let c = await coordinator(dataDir, { secretsKeyFile: keyA });
    const id = ((await c.api("POST", "/api/jobs", jobSpec())).json as JobView).id;
    await c.running.close();

    const rotated = await runCommand(process.execPath, [ENTRY, "server", "rotate-secrets-key", "--data", dataDir, "--old-key-file", keyA, "--new-key-file", keyB], { env: baseEnv });
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout.toString(), /re-sealed 2 secret\(s\) under key [0-9a-f]{16}/);
    const again = await runCommand(process.execPath, [ENTRY, "server", "rotate-secrets-key", "--data", dataDir, "--old-key-file", keyA, "--new-key-file", keyB], { env: baseEnv });
    assert.match(again.stdout.toString(), /re-sealed 0 secret\(s\).*2 already under it/, "a rerun changes nothing");
    const unknown = await runCommand(process.execPath, [ENTRY, "server", "rotate-secrets-key", "--data", dataDir, "--new-key-file", keyA], { env: baseEnv });
    assert.equal(unknown.code, 1, "values under a key not given are reported");
    assert.match(unknown.stderr, /sealed under key [0-9a-f]{16}, which was not given/);

    c = await coordinator(dataDir, { secretsKeyFile: keyA });
    const executor = shellExecutor(c, dir, "exec-rotate");
    try {
      const job = await waitEnded(c, id);
      assert.equal(job.state, "errored");
      assert.match(job.failureMessage ?? "", new RegExp(`sealed with key ${readSecretKeyFile(keyB).id}, which this coordinator does not have`));
      assertNoSecret("coordinator log", c.log());
    } finally {
      await executor.stop(5000);
      await c.running.close();
    }
  });

  it("postgres: sealed in the database (pg_dump and a scan of the tables), re-sealed by a rotation, gone after cancel", async (t) => {
    if (NO_POSTGRES) return t.skip(NO_POSTGRES);
    const { url, drop } = await freshDatabase();
    const keyA = await writeKey(join(dir, "pa"));
    const keyB = await writeKey(join(dir, "pb"));
    await mkdir(join(dir, "pg"), { recursive: true });
    let c = await coordinator(join(dir, "pg"), { secretsKeyFile: keyA, database: url });
    try {
      const id = ((await c.api("POST", "/api/jobs", jobSpec())).json as JobView).id;
      const dump = await runCommand("pg_dump", ["--data-only", url], { env: baseEnv });
      assert.equal(dump.code, 0, dump.stderr);
      assert.match(dump.stdout.toString(), /job_secrets/);
      assertNoSecret("pg_dump", dump.stdout);
      const scan = await runCommand("psql", [url, "-At", "-c", "SELECT row_to_json(j)::text FROM jobs j UNION ALL SELECT row_to_json(s)::text FROM job_secrets s"], { env: baseEnv });
      assert.match(scan.stdout.toString(), /API_KEY/);
      assertNoSecret("jobs and job_secrets rows", scan.stdout);
      await c.running.close();

      const rotated = await runCommand(process.execPath, [ENTRY, "server", "rotate-secrets-key", "--database", url, "--old-key-file", keyA, "--new-key-file", keyB], { env: baseEnv });
      assert.equal(rotated.code, 0, rotated.stderr);
      assert.match(rotated.stdout.toString(), /re-sealed 2 secret/);

      c = await coordinator(join(dir, "pg"), { secretsKeyFile: keyB, database: url });
      const job = (await c.running.store.jobs.getJob(id))?.job;
      assert.ok(job);
      const opened = await new JobSecrets({ store: c.running.store, key: readSecretKeyFile(keyB), allowPlaintext: false }).reveal(job);
      assert.equal(opened.secrets.API_KEY, SECRET);
      assert.equal(opened.registryAuth?.["registry.invalid"]?.password, REGISTRY_PASSWORD);
      await assert.rejects(new JobSecrets({ store: c.running.store, key: readSecretKeyFile(keyA), allowPlaintext: false }).reveal(job), SecretKeyError);
      const withPrevious = new JobSecrets({ store: c.running.store, key: readSecretKeyFile(keyA), previousKeys: [readSecretKeyFile(keyB)], allowPlaintext: false });
      assert.equal((await withPrevious.reveal(job)).secrets.API_KEY, SECRET, "a previous key still opens");
      await c.api("POST", `/api/jobs/${id}/cancel`);
      assert.deepEqual(await c.running.store.secrets.forJob(id), []);
      assertNoSecret("coordinator log", c.log());
    } finally {
      await c.running.close();
      await drop();
    }
  });

  after(async () => {
    if (!NO_POSTGRES) await dropTemplate();
  });
});
