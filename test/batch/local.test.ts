/**
 * `airlock batch run --local` against a real coordinator, with real bwrap and real dockerd: the
 * spec (a sed rewrite, a file holding `${{ repository.name }}`, a step output used by a later
 * step) over several repositories gives, byte for byte, the diffs the server-side preview of the
 * same spec gives on an executor; the upload is a version `batch show` lists like a server-side
 * one (and applies like one, its changeset templated with the local step outputs); `--no-upload`
 * writes the diffs under --out instead; a monorepo's workspaces run sparse and give the executors'
 * diffs too. Also: the git endpoint reads with the API token (never pushes), a spec asking more
 * isolation than the runtime gives is refused, and a failing step fails only its entry. Runtimes that cannot run here are skipped with
 * the reason printed.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { gitEnv, run } from "../../src/common/exec.ts";
import { silentLogger } from "../../src/common/logger.ts";
import { BatchView } from "../../src/protocol/batch.ts";
import { isTerminal } from "../../src/protocol/index.ts";
import { BwrapRuntime } from "../../src/runtimes/bwrap/index.ts";
import { DockerRuntime } from "../../src/runtimes/docker/index.ts";
import { TEST_IMAGES, testImagesMissing } from "../helpers/bwrap.ts";
import { baseEnv, ENTRY, http, makeRepo, startCluster, tempDir, type Cluster } from "../helpers/cluster.ts";
import { dockerUnavailable, SOCKET } from "../runtimes/docker-target.ts";

const REPOSITORIES = ["acme/one", "acme/two", "acme/three", "acme/four"];

const SPEC = `name: local-rename
description: foo becomes bar, with a note per repository
on:
  - "acme/*"
isolation: namespace
steps:
  - key: rewrite
    image: airlock-test/busybox
    run: |
      sed -i 's/foo/bar/g' src/app.txt
      grep -c bar src/app.txt
    outputs:
      count:
        value: "\${{ trim(step.stdout) }}"
  - key: note
    image: airlock-test/busybox
    files:
      NOTES.md: "Rewritten in \${{ repository.name }}\\n"
    run: |
      echo "bars in \${{ repository.name }}: \${{ outputs.count }}" > COUNT.txt
changesetTemplate:
  title: Rename foo to bar
  branch: batch/local-rename
  commit:
    message: "Rename foo to bar in \${{ repository.name }} (\${{ outputs.count }} lines)"
`;

async function bwrapUnusable(): Promise<string | undefined> {
  const missing = testImagesMissing();
  if (missing) return missing;
  const dir = await tempDir("airlock-bwrap-probe-");
  try {
    const probe = await new BwrapRuntime({ path: process.env.PATH ?? "/usr/bin:/bin", dataDir: dir, images: [], logger: silentLogger }).probe();
    return probe.usable ? undefined : probe.detail;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const skipBwrap = await bwrapUnusable();
const skipDocker = await dockerUnavailable(new DockerRuntime({ host: SOCKET, logger: silentLogger }));
if (skipBwrap) process.stdout.write(`# SKIP batch run --local with bwrap: ${skipBwrap}\n`);
if (skipDocker) process.stdout.write(`# SKIP batch run --local with docker: ${skipDocker}\n`);
/** The runtime the server-side run's executor uses: bwrap, else docker. */
const serverRuntime = !skipBwrap ? "bwrap" : !skipDocker ? "docker" : undefined;

describe("batch run --local", { skip: serverRuntime ? false : `neither bwrap (${skipBwrap}) nor docker (${skipDocker}) can run here`, timeout: 600_000 }, () => {
  let cluster: Cluster;
  let specFile: string;
  /** The server-side preview's diff per repository (version 1). */
  const serverDiffs = new Map<string, string>();

  async function api(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await http(`${cluster.coordinator.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${cluster.coordinator.apiToken}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (response.status >= 400) throw new Error(`${method} ${path}: ${response.status} ${response.text}`);
    return response.body;
  }

  async function entryDiff(name: string, repository: string, version: number): Promise<string> {
    const response = await fetch(`${cluster.coordinator.url}/api/batches/${name}/diff?repository=${encodeURIComponent(repository)}&version=${version}`, {
      headers: { authorization: `Bearer ${cluster.coordinator.apiToken}` },
    });
    assert.equal(response.status, 200);
    return response.text();
  }

  /** Runs the CLI (as users do) without blocking this process's event loop. */
  function airlock(args: string[], cwd = cluster.dir): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [ENTRY, ...args], {
        cwd,
        env: { ...baseEnv, AIRLOCK_URL: cluster.coordinator.url, AIRLOCK_TOKEN: cluster.coordinator.apiToken, DOCKER_HOST: `unix://${SOCKET}` },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
  }

  const localArgs = (runtime: string, file: string, ...rest: string[]) => ["batch", "run", file, "--local", "--runtime", runtime, "-j", "2", "--images", TEST_IMAGES, "--work-dir", join(cluster.dir, `local-${runtime}`), ...rest];

  before(async () => {
    cluster = await startCluster({ runtime: serverRuntime, executors: 0, executorArgs: ["--queues", "batch", "--max-jobs", "2", "--images", TEST_IMAGES, "--docker-host", SOCKET] });
    for (const [index, name] of REPOSITORIES.entries()) {
      const dir = await makeRepo(join(cluster.dir, "sources", name), {
        "README.md": `# ${name}\n`,
        "src/app.txt": `foo ${index}\nkeep this line\nfoo and foo again\n`,
        "src/other.txt": "untouched\n",
      });
      await cluster.api.addRepository(name, dir);
    }
    specFile = join(cluster.dir, "rename.yaml");
    await writeFile(specFile, SPEC);

    // The server-side run of the same spec: version 1, on an executor.
    cluster.startExecutor();
    let view = BatchView.parse(await api("POST", "/api/batches", { spec: SPEC }));
    const deadline = Date.now() + 180_000;
    while (view.entries.some((entry) => !isTerminal(entry.state))) {
      if (Date.now() > deadline) throw new Error(`the server-side preview did not end: ${JSON.stringify(view.entries)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      view = BatchView.parse(await api("GET", "/api/batches/local-rename"));
    }
    assert.equal(view.version.version, 1);
    assert.deepEqual(view.entries.map((entry) => [entry.repository, entry.state]).sort(), REPOSITORIES.map((name) => [name, "completed"]).sort(), JSON.stringify(view.entries));
    for (const name of REPOSITORIES) serverDiffs.set(name, await entryDiff("local-rename", name, 1));
    await Promise.all(cluster.executors.map((executor) => executor.stop(5000)));
  });

  after(async () => {
    await cluster?.close();
  });

  it("the server-side diffs are what the spec says (sed, the templated file, the step output)", () => {
    const diff = serverDiffs.get("acme/two") ?? "";
    assert.match(diff, /-foo 1\n\+bar 1\n keep this line\n-foo and foo again\n\+bar and bar again\n/);
    assert.match(diff, /\+\+\+ b\/NOTES.md\n@@ -0,0 \+1 @@\n\+Rewritten in acme\/two\n/);
    assert.match(diff, /\+\+\+ b\/COUNT.txt\n@@ -0,0 \+1 @@\n\+bars in acme\/two: 2\n/);
    assert.doesNotMatch(diff, /other\.txt/);
  });

  it("reads repositories over git with the API token, and never pushes", async () => {
    const auth = { authorization: `Bearer ${cluster.coordinator.apiToken}` };
    const refs = await http(`${cluster.coordinator.url}/.executors/git/acme/one/info/refs?service=git-upload-pack`, { headers: auth });
    assert.equal(refs.status, 200);
    assert.match(refs.text, /refs\/heads\/main/);
    assert.equal((await http(`${cluster.coordinator.url}/.executors/git/acme/one/info/refs?service=git-receive-pack`, { headers: auth })).status, 403);
    assert.equal((await http(`${cluster.coordinator.url}/.executors/git/acme/missing/info/refs?service=git-upload-pack`, { headers: auth })).status, 404);
    assert.equal((await http(`${cluster.coordinator.url}/.executors/git/acme/one/info/refs?service=git-upload-pack`, { headers: { authorization: "Bearer not-a-token" } })).status, 401);
  });

  for (const [runtime, skip] of [
    ["bwrap", skipBwrap],
    ["docker", skipDocker],
  ] as const) {
    it(`with ${runtime}: byte-identical diffs to the server-side run, uploaded as a version batch show lists`, { skip }, async () => {
      const before = BatchView.parse(await api("GET", "/api/batches/local-rename"));
      const run = await airlock(localArgs(runtime, specFile));
      assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
      assert.match(run.stderr, new RegExp(`4 jobs on this machine \\(runtime ${runtime}`));
      assert.match(run.stderr, /acme\/one: started/);
      assert.match(run.stderr, /\[\d\/4\] acme\/two: completed in [\d.]+m?s: 3 files changed, \+4 -2/);
      const version = Number(/uploaded as version (\d+) of batch local-rename/.exec(run.stdout)?.[1]);
      assert.equal(version, before.latestVersion + 1, run.stdout);

      const shown = await airlock(["batch", "show", "local-rename", "--json"]);
      assert.equal(shown.code, 0, shown.stderr);
      const view = BatchView.parse(JSON.parse(shown.stdout));
      assert.equal(view.version.version, version);
      assert.equal(view.version.source, "local");
      assert.deepEqual(view.entries.map((entry) => [entry.repository, entry.state, entry.diffStat]).sort(), REPOSITORIES.map((name) => [name, "completed", { files: 3, added: 4, deleted: 2 }]).sort());
      for (const name of REPOSITORIES) {
        const local = await entryDiff("local-rename", name, version);
        assert.equal(local, serverDiffs.get(name), `${name}: the local diff (${runtime}) differs from the server-side one`);
      }
      const table = await airlock(["batch", "show", "local-rename"]);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /acme\/three/);
    });
  }

  it("--no-upload writes the diffs (the same bytes), logs and results.json under --out, and stores nothing", { skip: skipBwrap ?? skipDocker }, async () => {
    const runtime = skipBwrap ? "docker" : "bwrap";
    const before = BatchView.parse(await api("GET", "/api/batches/local-rename"));
    const out = join(cluster.dir, "results");
    const run = await airlock(localArgs(runtime, specFile, "--no-upload", "--out", out));
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, new RegExp(`4 of 4 completed; 4 diffs written under ${out}`));
    for (const name of REPOSITORIES) {
      assert.equal(await readFile(join(out, `${name}.diff`), "utf8"), serverDiffs.get(name), name);
      assert.match(await readFile(join(out, `${name}.log`), "utf8"), /── rewrite \(completed\) ──\n2\n/);
    }
    const results = JSON.parse(await readFile(join(out, "results.json"), "utf8")) as { batch: string; entries: { repository: string; state: string; diff: string; outputs: { count?: string } }[] };
    assert.equal(results.batch, "local-rename");
    assert.deepEqual(results.entries.map((entry) => [entry.repository, entry.state, entry.diff, entry.outputs.count]).sort(), REPOSITORIES.map((name) => [name, "completed", `${name}.diff`, "2"]).sort());
    assert.equal(BatchView.parse(await api("GET", "/api/batches/local-rename")).latestVersion, before.latestVersion, "nothing uploaded");
  });

  it("applies an uploaded version like a server-side one, its commit message templated with the local step output", async () => {
    const latest = BatchView.parse(await api("GET", "/api/batches/local-rename"));
    assert.equal(latest.version.source, "local");
    const applied = await airlock(["batch", "apply", "local-rename", "--repo", "acme/three"]);
    assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);
    assert.match(applied.stdout, /acme\/three\s+-\s+batch\/local-rename\s+pushed\s+[0-9a-f]{12}/);
    const origin = join(cluster.dir, "sources", "acme/three");
    const log = await run("git", ["log", "-1", "--format=%s", "batch/local-rename"], { cwd: origin, env: gitEnv(baseEnv) });
    assert.equal(log.stdout.toString().trim(), "Rename foo to bar in acme/three (2 lines)");
    const note = await run("git", ["show", "batch/local-rename:NOTES.md"], { cwd: origin, env: gitEnv(baseEnv) });
    assert.equal(note.stdout.toString(), "Rewritten in acme/three\n");
  });

  it("runs a monorepo's workspaces (sparse checkouts) like the executors do, each diff confined to its directory", async () => {
    const origin = await makeRepo(join(cluster.dir, "sources", "mono/app"), {
      "README.md": "foo at the root\n",
      "packages/a/package.json": '{"name": "a"}\n',
      "packages/a/index.js": "export const a = 'foo';\n",
      "packages/b/package.json": '{"name": "b"}\n',
      "packages/b/index.js": "export const b = 'foo';\n",
    });
    await cluster.api.addRepository("mono/app", origin);
    const mono = [
      "name: local-mono",
      "on: [mono/app]",
      "workspaces:",
      "  - rootAtLocationOf: package.json",
      "    onlyFetchWorkspace: true",
      "isolation: none",
      "steps:",
      "  - run: |",
      "      test ! -e ../../README.md",
      "      sed -i s/foo/bar/g index.js",
      '      echo "${{ steps.path }}" > WORKSPACE.txt',
      "",
    ].join("\n");
    const file = join(cluster.dir, "mono.yaml");
    await writeFile(file, mono);
    // The server-side run, on an executor with the shell runtime.
    const executor = cluster.startExecutor(["--runtime", "shell"]);
    let view = BatchView.parse(await api("POST", "/api/batches", { spec: mono }));
    while (view.entries.some((entry) => !isTerminal(entry.state))) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      view = BatchView.parse(await api("GET", "/api/batches/local-mono"));
    }
    await executor.stop(5000);
    assert.deepEqual(view.entries.map((entry) => [entry.workspace, entry.state]), [
      ["packages/a", "completed"],
      ["packages/b", "completed"],
    ]);
    const out = join(cluster.dir, "mono-results");
    const run = await airlock(localArgs("shell", file, "--no-upload", "--out", out));
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, /mono\/app:packages\/a: started/);
    for (const workspace of ["packages/a", "packages/b"]) {
      const local = await readFile(join(out, "mono/app", `${workspace}.diff`), "utf8");
      const server = await (await fetch(`${cluster.coordinator.url}/api/batches/local-mono/diff?repository=mono/app&workspace=${workspace}&version=1`, { headers: { authorization: `Bearer ${cluster.coordinator.apiToken}` } })).text();
      assert.equal(local, server, workspace);
      assert.deepEqual([...local.matchAll(/^diff --git a\/(\S+)/gm)].map((match) => match[1]), [`${workspace}/WORKSPACE.txt`, `${workspace}/index.js`]);
      assert.match(local, new RegExp(`\\+${workspace}\n`));
    }
  });

  it("stops on Ctrl-C: the running steps are killed, nothing is uploaded, no workspace is left", async () => {
    const file = join(cluster.dir, "slow.yaml");
    await writeFile(file, ["name: local-slow", "on: [acme/one, acme/two, acme/three]", "isolation: none", "steps:", "  - run: |", "      echo sleeping", "      sleep 60", ""].join("\n"));
    const workDir = join(cluster.dir, "local-slow");
    const child = spawn(process.execPath, [ENTRY, "batch", "run", file, "--local", "--runtime", "shell", "-j", "2", "--work-dir", workDir], {
      env: { ...baseEnv, AIRLOCK_URL: cluster.coordinator.url, AIRLOCK_TOKEN: cluster.coordinator.apiToken },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    const sleeping = new Promise<void>((resolve) =>
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString();
        if ((stderr.match(/\| sleeping/g) ?? []).length >= 2) resolve();
      }),
    );
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    await sleeping;
    const started = Date.now();
    child.kill("SIGINT");
    const code = await exited;
    assert.equal(code, 130, `${stdout}\n${stderr}`);
    assert.ok(Date.now() - started < 15_000, "stopped promptly");
    assert.match(stderr, /interrupted: stopping the running jobs/);
    assert.match(stderr, /canceled: 0 of 3 completed; nothing uploaded/);
    assert.match(stdout, /acme\/three\s+canceled/);
    assert.equal((await http(`${cluster.coordinator.url}/api/batches/local-slow`, { headers: { authorization: `Bearer ${cluster.coordinator.apiToken}` } })).status, 404);
    const left = await run("sh", ["-c", `ls -A ${join(workDir, "workspaces")}; pgrep -f "slee[p] 60" || true`], { env: gitEnv(baseEnv) });
    assert.equal(left.stdout.toString().trim(), "", "no workspace and no step process left");
  });

  it("refuses a runtime weaker than the spec's isolation, and fails only the entry whose step fails", async () => {
    const refused = await airlock(localArgs("shell", specFile));
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /airlock: the spec asks for isolation namespace, but runtime shell gives none/);
    const failing = join(cluster.dir, "failing.yaml");
    await writeFile(failing, ["name: local-failing", "on: [acme/one, acme/two]", "isolation: none", "steps:", "  - run: |", '      test "${{ repository.name }}" != acme/two', "      echo changed > out.txt", ""].join("\n"));
    // What a run that died left: a workspace whose owner is gone (this test's finished child).
    const dead = spawn("true");
    await new Promise((resolve) => dead.on("exit", resolve));
    const leftover = join(cluster.dir, "local-shell", "workspaces", "job-9-1-abcdef");
    await mkdir(join(leftover, "workspace"), { recursive: true });
    await writeFile(join(leftover, "owner.pid"), String(dead.pid));
    const run = await airlock(localArgs("shell", failing));
    assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stderr, /removed 1 leftovers of an earlier run that died/);
    assert.equal(existsSync(leftover), false);
    assert.match(run.stdout, /acme\/two\s+failed/);
    const view = BatchView.parse(await api("GET", "/api/batches/local-failing"));
    assert.deepEqual(view.entries.map((entry) => [entry.repository, entry.state]), [
      ["acme/one", "completed"],
      ["acme/two", "failed"],
    ]);
    assert.match(view.entries[1]?.failureMessage ?? "", /exited with code 1/);
    const logs = await http(`${cluster.coordinator.url}/api/batches/local-failing/logs?repository=acme/two`, { headers: { authorization: `Bearer ${cluster.coordinator.apiToken}` } });
    assert.equal(logs.status, 200);
    assert.match(logs.text, /── step-1 \(failed\) ──/);
  });
});
