/**
 * The compose cluster (deploy/compose/docker-compose.yml) as an operator runs it: the images
 * from scripts/images.sh (built from Debian with mmdebstrap, reused while their inputs are
 * unchanged), Postgres, two coordinators, an executor on the host's dockerd through its socket
 * and one with a Docker-in-Docker sidecar, on the project's own network (internal; the
 * coordinators are also published on loopback ports, which is how this test talks to them).
 * Jobs submitted through both coordinators each run once, logs and diffs read the same through
 * either, jobs of the DinD executor never reach the host's daemon, every container turns healthy,
 * and `down` removes everything the project made.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chown, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ApiClient } from "../../src/cli/api-client.ts";
import { run, type RunResult } from "../../src/common/exec.ts";
import type { JobView } from "../../src/protocol/index.ts";
import { LABEL } from "../../src/runtimes/labels.ts";
import { makeRepo, ROOT, waitForJob } from "../helpers/cluster.ts";

const DOCKER = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";
const COMPOSE_FILE = join(ROOT, "deploy/compose/docker-compose.yml");
const STEP_IMAGE = "airlock-test/busybox:latest";
const SERVICES = ["postgres", "coordinator-a", "coordinator-b", "executor-socket", "executor-dind", "dind"];
const env = { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", HOME: process.env.HOME, TMPDIR: process.env.TMPDIR };

async function sh(command: string, args: string[], extraEnv: Record<string, string> = {}, input?: string): Promise<RunResult> {
  return run(command, args, { env: { ...env, ...extraEnv }, cwd: ROOT, ...(input === undefined ? {} : { input }) });
}

async function ok(command: string, args: string[], extraEnv: Record<string, string> = {}): Promise<string> {
  const result = await sh(command, args, extraEnv);
  assert.equal(result.code, 0, `${command} ${args.join(" ")} exited ${result.code}: ${result.stderr.slice(-3000)}`);
  return result.stdout.toString("utf8");
}

async function found(command: string, args: string[]): Promise<boolean> {
  return sh(command, args).then(
    (result) => result.code === 0,
    () => false,
  );
}

/** Why this test cannot run here, or undefined. */
async function unavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "needs root (mmdebstrap, and the socket executor's data dir is shared with the host's dockerd)";
  if (!(await found(DOCKER, ["info"]))) return "the Docker daemon does not answer (scripts/setup.d/10-docker.sh start)";
  if (!(await found("docker-compose", ["version"]))) return "docker-compose is missing (apt-get install docker-compose)";
  if (!(await found("mmdebstrap", ["--version"]))) return "mmdebstrap is missing (apt-get install mmdebstrap)";
  if (!existsSync(join(ROOT, "dist/src/cli/main.js"))) return "no build in dist/ (npm run build)";
  if (!(await found(DOCKER, ["image", "inspect", STEP_IMAGE]))) return `step image ${STEP_IMAGE} is missing (scripts/test-images.sh imports it)`;
  return undefined;
}

/** Builds the images (or finds them current); skips, with the reason, when the Debian mirror cannot be reached. */
async function buildImages(): Promise<string | undefined> {
  const result = await sh(join(ROOT, "scripts/images.sh"), []);
  process.stdout.write(`# scripts/images.sh: ${result.stderr.trim().split("\n").slice(-6).join(" | ")}\n`);
  if (result.code === 0) return undefined;
  const mirror = process.env.AIRLOCK_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
  const reachable = await fetch(`${mirror}/dists/bookworm/Release`, { method: "HEAD", signal: AbortSignal.timeout(10_000) }).then(
    (response) => response.ok,
    () => false,
  );
  if (!reachable) return `the images cannot be built: the Debian mirror ${mirror} cannot be reached`;
  assert.fail(`scripts/images.sh failed: ${result.stderr.slice(-4000)}`);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  assert.ok(address && typeof address === "object");
  return address.port;
}

async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const skip = await unavailable();
if (skip) process.stdout.write(`# SKIP compose cluster: ${skip}\n`);

describe("compose cluster: Postgres, two coordinators, a socket-mode and a DinD executor", { skip, timeout: 40 * 60_000 }, () => {
  const project = `airlockcompose${randomBytes(4).toString("hex")}`;
  const token = (prefix: string): string => `${prefix}_${randomBytes(20).toString("hex")}`;
  let dir: string;
  let composeEnv: Record<string, string>;
  let up = false;
  let imagesMissing: string | undefined;
  let a: ApiClient;
  let b: ApiClient;
  const compose = (...args: string[]): Promise<string> => ok("docker-compose", ["--project-name", project, "--file", COMPOSE_FILE, ...args], composeEnv);
  const container = async (service: string): Promise<string> => (await compose("ps", "-q", service)).trim();

  before(async () => {
    imagesMissing = await buildImages();
    if (imagesMissing) return;
    dir = await mkdtemp(join(tmpdir(), "airlock-compose-"));
    // The coordinators run as the image's user airlock (10001); git refuses repositories of other owners.
    await makeRepo(join(dir, "work"), { "README": "hello\n" });
    await mkdir(join(dir, "repos"));
    await ok("git", ["clone", "--quiet", "--bare", join(dir, "work"), join(dir, "repos/demo.git")]);
    await ok("chown", ["-R", "10001:10001", join(dir, "repos")]);
    const socketData = join(dir, "executor-socket");
    await mkdir(socketData, { mode: 0o700 });
    await chown(socketData, 0, 0);
    composeEnv = {
      AIRLOCK_EXECUTOR_TOKEN: token("aet"),
      AIRLOCK_API_TOKEN: token("aat"),
      AIRLOCK_POSTGRES_PASSWORD: randomBytes(16).toString("hex"),
      AIRLOCK_REPOS: join(dir, "repos"),
      AIRLOCK_SOCKET_EXECUTOR_DATA: socketData,
      AIRLOCK_PORT_A: String(await freePort()),
      AIRLOCK_PORT_B: String(await freePort()),
    };
    up = true;
    await compose("up", "--detach", "--no-build");
    // The sidecar's daemon starts empty and has no network: step images are loaded into it.
    const dind = await container("dind");
    const load = await sh("sh", ["-c", `"$0" save "$1" | "$0" exec -i "$2" docker load`, DOCKER, STEP_IMAGE, dind]);
    assert.equal(load.code, 0, `loading ${STEP_IMAGE} into the sidecar: ${load.stderr}`);
    a = new ApiClient({ url: `http://127.0.0.1:${composeEnv.AIRLOCK_PORT_A}`, token: composeEnv.AIRLOCK_API_TOKEN ?? "" });
    b = new ApiClient({ url: `http://127.0.0.1:${composeEnv.AIRLOCK_PORT_B}`, token: composeEnv.AIRLOCK_API_TOKEN ?? "" });
  });

  after(async () => {
    await a?.close();
    await b?.close();
    if (up) await sh("docker-compose", ["--project-name", project, "--file", COMPOSE_FILE, "down", "--volumes", "--remove-orphans", "--timeout", "20"], composeEnv);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("builds images with OCI labels, a health check, and the coordinator as a non-root user", async (t) => {
    if (imagesMissing) return t.skip(imagesMissing);
    const version = (JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    for (const image of ["airlock", "airlock-dind", "airlock-postgres"]) {
      const [config] = JSON.parse(await ok(DOCKER, ["image", "inspect", `${image}:latest`])) as { Config: { Labels: Record<string, string>; Healthcheck?: { Test: string[] }; User: string } }[];
      assert.ok(config);
      assert.equal(config.Config.Labels["org.opencontainers.image.version"], version, image);
      assert.ok(config.Config.Labels["org.opencontainers.image.source"], `${image} names its source`);
      assert.match(config.Config.Labels["org.opencontainers.image.revision"] ?? "", /^[0-9a-f]{40}$/, image);
      assert.ok((config.Config.Healthcheck?.Test.length ?? 0) > 1, `${image} has a HEALTHCHECK`);
      if (image === "airlock") assert.equal(config.Config.User, "10001:10001");
      if (image === "airlock-postgres") assert.equal(config.Config.User, "postgres");
    }
    const again = await sh(join(ROOT, "scripts/images.sh"), []);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((again.stderr.match(/is current/g) ?? []).length, 3, `a second build reuses all three images: ${again.stderr}`);
  });

  it("every container turns healthy, and both executors register with both coordinators", async (t) => {
    if (imagesMissing) return t.skip(imagesMissing);
    for (const service of SERVICES) {
      const id = await container(service);
      await until(`${service} is healthy`, async () => (await ok(DOCKER, ["inspect", "--format", "{{.State.Health.Status}}", id])).trim() === "healthy", 180_000);
    }
    for (const api of [a, b]) {
      const runtimes = await until("both executors are seen", async () => {
        const seen = (await api.executors()).filter((executor) => executor.alive).map((executor) => executor.runtime);
        return seen.length === 2 ? seen.sort() : undefined;
      }, 60_000);
      assert.deepEqual(runtimes, ["docker", "gvisor"]);
    }
  });

  it("runs jobs submitted through either coordinator exactly once; logs and diffs read the same through both", async (t) => {
    if (imagesMissing) return t.skip(imagesMissing);
    const since = Math.floor(Date.now() / 1000) - 1;
    await a.addRepository("demo", "/srv/repos/demo.git");
    const executors = await a.executors();
    const byRuntime = (runtime: string): string => executors.find((executor) => executor.runtime === runtime && executor.alive)?.name ?? assert.fail(`no ${runtime} executor`);
    const socketExecutor = byRuntime("docker");
    const dindExecutor = byRuntime("gvisor");
    const spec = (tag: string, isolation: string, extra: string[] = []) => ({
      repository: "demo",
      isolation,
      steps: [{ key: "edit", image: "airlock-test/busybox", commands: [`echo "ran job ${tag}"`, ...extra, `sed -i s/hello/hi-${tag}/ README`] }],
      outputs: { diff: true },
    });
    // Only the DinD executor (runsc) takes gvisor jobs; while it runs the first, the socket
    // executor takes the container job queued meanwhile.
    const g1 = await a.submit(spec("g1", "gvisor", ["sleep 6"]));
    await waitForJob(a, g1.id, (job) => job.state === "processing", 120_000);
    const c1 = await b.submit(spec("c1", "container"));
    const c2 = await a.submit(spec("c2", "container"));
    const g2 = await b.submit(spec("g2", "gvisor"));
    const submitted = { g1, c1, c2, g2 };
    const done: Record<string, JobView> = {};
    for (const [tag, job] of Object.entries(submitted)) {
      const finished = await waitForJob(tag.startsWith("g") ? b : a, job.id, undefined, 180_000);
      assert.equal(finished.state, "completed", `${tag}: ${finished.failureMessage ?? JSON.stringify(finished.entries)}`);
      assert.equal(finished.attempt, 1, `${tag} ran in one attempt`);
      done[tag] = finished;
    }
    assert.equal(done.g1?.executorName, dindExecutor);
    assert.equal(done.g2?.executorName, dindExecutor);
    assert.equal(done.c1?.executorName, socketExecutor, "the socket executor took the job queued while the DinD one was busy");
    for (const [tag, job] of Object.entries(done)) {
      const [logA, logB] = await Promise.all([a.readLog(job.id, "edit"), b.readLog(job.id, "edit")]);
      assert.equal(logA.toString(), logB.toString(), `${tag}: the same log through both coordinators`);
      assert.equal(logA.toString().split(`ran job ${tag}`).length - 1, 1, `${tag}: the step ran once: ${logA.toString()}`);
      const [diffA, diffB] = await Promise.all([a.artifactBytes(job.id, "diff"), b.artifactBytes(job.id, "diff")]);
      assert.equal(diffA.toString(), diffB.toString(), `${tag}: the same diff through both coordinators`);
      assert.match(diffA.toString(), new RegExp(`-hello\\n\\+hi-${tag}\\n`));
    }
    // The host's daemon made one container per job of the socket executor, and none for the
    // DinD executor's jobs: those ran on the sidecar's daemon only.
    const events = await ok(DOCKER, ["events", "--since", String(since), "--until", String(Math.ceil(Date.now() / 1000) + 1), "--filter", "type=container", "--filter", "event=create", "--format", "{{json .Actor.Attributes}}"]);
    const created = events
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, string>);
    for (const [tag, job] of Object.entries(done)) {
      const mine = created.filter((labels) => labels[LABEL.job] === String(job.id) && labels[LABEL.executor] === job.executorName);
      assert.equal(mine.length, job.executorName === socketExecutor ? 1 : 0, `${tag}: containers the host's daemon made for it`);
    }
    assert.equal(created.filter((labels) => labels[LABEL.executor] === dindExecutor).length, 0, "the DinD executor never used the host's daemon");
  });

  it("down removes the project's containers, networks and volumes", async (t) => {
    if (imagesMissing) return t.skip(imagesMissing);
    await compose("down", "--volumes", "--remove-orphans", "--timeout", "20");
    up = false;
    const filter = `label=com.docker.compose.project=${project}`;
    assert.equal((await ok(DOCKER, ["ps", "--all", "--quiet", "--filter", filter])).trim(), "");
    assert.equal((await ok(DOCKER, ["network", "ls", "--quiet", "--filter", filter])).trim(), "");
    assert.equal((await ok(DOCKER, ["volume", "ls", "--quiet", "--filter", filter])).trim(), "");
  });
});
