/**
 * `airlock server install service` and `airlock executor install service`: the units written carry
 * the flags given (checked by the commands' own config parsers first), pass `systemd-analyze
 * verify`, and are hardened. Starting them needs systemd as PID 1, which these machines lack.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { systemdQuote } from "../../src/cli/service-unit.ts";
import { baseEnv, ENTRY, tempDir } from "../helpers/cluster.ts";

const exec = promisify(execFile);
const ANALYZE = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((path) => existsSync(path));

async function airlock(args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [ENTRY, ...args], { env: baseEnv, timeout: 60_000, ...(cwd ? { cwd } : {}) });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === "number" ? failed.code : -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

/** `systemd-analyze verify`: exit status and every warning it printed. */
async function verify(unit: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await exec(ANALYZE!, ["verify", unit], { timeout: 60_000 });
    return { code: 0, output: `${stdout}${stderr}`.trim() };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, output: `${failed.stdout ?? ""}${failed.stderr ?? ""}` };
  }
}

const line = (unit: string, key: string): string[] => unit.split("\n").filter((text) => text.startsWith(`${key}=`)).map((text) => text.slice(key.length + 1));

describe("systemd units", () => {
  let dir: string;
  let units: string;
  let tokenFile: string;

  before(async () => {
    dir = await tempDir("airlock-systemd-");
    units = join(dir, "units");
    tokenFile = join(dir, "executor-token");
    await writeFile(tokenFile, "aet_0123456789abcdef0123456789\n", { mode: 0o600 });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("quotes ExecStart words as systemd reads them", () => {
    assert.equal(systemdQuote("--max-jobs"), "--max-jobs");
    assert.equal(systemdQuote("store --file=/etc/x"), '"store --file=/etc/x"');
    assert.equal(systemdQuote("50%"), "50%%", "% would start a specifier");
    assert.equal(systemdQuote("$HOME"), '"$$HOME"', "$ would expand a variable");
    assert.equal(systemdQuote('say "hi"'), '"say \\"hi\\""');
  });

  it("writes a coordinator unit with the flags given, hardened, reloadable", async () => {
    const result = await airlock(["server", "install", "service", "--unit-dir", units, "--listen", "0.0.0.0:7780", "--queue-weights", "batch=4,default=1", "--git-credential-helper", "store --file=/etc/airlock/git-credentials", "--user", "airlock"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /wrote .*airlock-server\.service/);
    const unit = await readFile(join(units, "airlock-server.service"), "utf8");
    assert.match(line(unit, "ExecStart")[0] ?? "", / server --listen 0\.0\.0\.0:7780 --queue-weights batch=4,default=1 --git-credential-helper "store --file=\/etc\/airlock\/git-credentials" --data \/var\/lib\/airlock-server$/);
    for (const setting of ["ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=airlock-server", "User=airlock", "Restart=on-failure", "KillSignal=SIGTERM", "KillMode=mixed", "ExecReload=/bin/kill -HUP $MAINPID", "RestrictNamespaces=yes", "CapabilityBoundingSet="]) {
      assert.ok(unit.split("\n").includes(setting), `${setting} in the coordinator unit`);
    }
    assert.deepEqual(line(unit, "TimeoutStopSec"), ["55s"], "the longest dequeue hold (25s) plus a margin");
  });

  it("writes an executor unit whose stop waits for running jobs, with what each runtime needs", async () => {
    const bwrap = await airlock(["executor", "install", "service", "--unit-dir", units, "--unit-name", "airlock-executor-bwrap", "--url", "http://c1:7780,http://c2:7780", "--token-file", tokenFile, "--runtime", "bwrap", "--max-runtime", "10m", "--data", "relative-data"], dir);
    assert.equal(bwrap.code, 0, bwrap.stderr);
    const unit = await readFile(join(units, "airlock-executor-bwrap.service"), "utf8");
    const start = line(unit, "ExecStart")[0] ?? "";
    assert.match(start, / executor run --url http:\/\/c1:7780,http:\/\/c2:7780 /);
    for (const pair of [`--token-file ${tokenFile}`, "--runtime bwrap", "--max-runtime 10m", `--data ${dir}/relative-data`]) assert.ok(start.includes(` ${pair}`), `${pair} in ${start}`);
    assert.deepEqual(line(unit, "TimeoutStopSec"), [`${600 + 120}s`], "--max-runtime plus the upload margin");
    assert.deepEqual(line(unit, "ReadWritePaths"), [`${join(dir, "relative-data")}`], "a data dir outside the state directory is writable");
    assert.deepEqual(line(unit, "Delegate"), ["yes"], "bwrap needs a delegated cgroup");
    assert.deepEqual(line(unit, "KillMode"), ["mixed"], "SIGTERM to the executor only: its jobs are not killed, it drains");
    assert.equal(line(unit, "RestrictNamespaces").length, 0, "bwrap needs user namespaces");
    assert.equal(line(unit, "ProtectControlGroups").length, 0, "bwrap writes its delegated cgroup");

    const docker = await airlock(["executor", "install", "service", "--unit-dir", units, "--unit-name", "airlock-executor-docker", "--token-file", tokenFile, "--runtime", "docker"]);
    assert.equal(docker.code, 0, docker.stderr);
    const dockerUnit = await readFile(join(units, "airlock-executor-docker.service"), "utf8");
    const hasDockerGroup = readFileSync("/etc/group", "utf8").split("\n").some((entry) => entry.startsWith("docker:"));
    if (hasDockerGroup) assert.deepEqual(line(dockerUnit, "SupplementaryGroups"), ["docker"]);
    else assert.match(dockerUnit, /No "docker" group on this host/);
    assert.match(dockerUnit, /root-equivalent/);
    assert.equal(line(dockerUnit, "Delegate").length, 0, "docker needs no delegated cgroup");
  });

  it("passes systemd-analyze verify, and the coordinator's exposure is low", async (t) => {
    if (!ANALYZE) return t.skip("systemd-analyze is not installed (Debian package systemd)");
    const written = (await readdir(units)).filter((name) => name.endsWith(".service"));
    assert.deepEqual(written.sort(), ["airlock-executor-bwrap.service", "airlock-executor-docker.service", "airlock-server.service"]);
    for (const name of written) {
      const result = await verify(join(units, name));
      assert.deepEqual(result, { code: 0, output: "" }, `${name}: systemd-analyze verify`);
    }
    // The check is real: a unit systemd would reject, or only warn about, fails it.
    const bad = (await readFile(join(units, "airlock-server.service"), "utf8")).replace("KillMode=mixed", "KillMode=sometimes");
    await writeFile(join(dir, "bad.service"), bad);
    assert.match((await verify(join(dir, "bad.service"))).output, /kill mode/);
    const { stdout } = await exec(ANALYZE, ["security", "--offline=yes", join(units, "airlock-server.service")]).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? "" }));
    const exposure = Number(/Overall exposure level for airlock-server\.service: ([\d.]+)/.exec(stdout)?.[1]);
    assert.ok(exposure > 0 && exposure <= 4, `coordinator exposure ${exposure} (0 best, 10 worst)`);
  });

  it("writes nothing for flags the command would refuse, and says why", async () => {
    const cases: [string[], number, RegExp][] = [
      [["executor", "install", "service", "--token-file", "TOKEN", "--max-jobs", "0"], 2, /--max-jobs: "0" must be a whole number from 1 to 256/],
      [["executor", "install", "service", "--token-file", "TOKEN", "--runtime", "bwrap", "--egress-allow", "not a rule!"], 2, /--egress-allow: "not a rule!"/],
      [["executor", "install", "service", "--token", "aet_secret"], 2, /--token: a secret on the command line .* use --token-file FILE/],
      [["executor", "install", "service"], 2, /no executor token for the service: pass --token-file FILE .* AIRLOCK_EXECUTOR_TOKEN in \/etc\/airlock\/executor\.env/],
      [["executor", "install", "service", "--token-file", "/nonexistent/token"], 2, /--token-file: cannot read "\/nonexistent\/token": ENOENT/],
      [["server", "install", "service", "--listen", "nowhere"], 2, /--listen: "nowhere" is not host:port/],
      [["server", "install", "service", "--lease-timeout", "soon"], 2, /--lease-timeout: "soon" is not a duration/],
      [["server", "install", "service", "--api-token", "aat_secret"], 2, /--api-token: a secret .* --api-token-file FILE/],
      [["server", "install", "service", "--database", "postgres://airlock:hunter2@db/airlock"], 2, /--database: the URL holds a password.* AIRLOCK_DATABASE_URL/],
      [["server", "install", "service", "--no-such-flag"], 1, /unknown option '--no-such-flag'/],
    ];
    for (const [args, code, message] of cases) {
      const target = join(dir, "refused");
      const result = await airlock([...args.map((arg) => (arg === "TOKEN" ? tokenFile : arg)), "--unit-dir", target]);
      assert.equal(result.code, code, `${args.join(" ")}: ${result.stderr}`);
      assert.match(result.stderr, message, args.join(" "));
      assert.equal(existsSync(target), false, `${args.join(" ")} wrote nothing`);
    }
  });

  it("prints the unit with --dry-run and writes nothing", async () => {
    const target = join(dir, "dry");
    const result = await airlock(["executor", "install", "service", "--dry-run", "--unit-dir", target, "--token-file", tokenFile, "--runtime", "shell"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^ExecStart=.* executor run --token-file .* --runtime shell --data \/var\/lib\/airlock-executor$/m);
    assert.equal(existsSync(target), false);
  });

  it("starts the units under systemd", async (t) => {
    const init = readFileSync("/proc/1/comm", "utf8").trim();
    if (init !== "systemd") return t.skip(`PID 1 is "${init}", not systemd: units cannot be started on this machine (only verified)`);
    if (process.getuid?.() !== 0) return t.skip("starting a system unit needs root");
    // A throwaway coordinator unit in /run (gone at reboot), as root, on a loopback port.
    const name = `airlock-test-${process.pid}`;
    const port = 20_000 + (process.pid % 20_000);
    const written = await airlock(["server", "install", "service", "--unit-dir", "/run/systemd/system", "--unit-name", name, "--user", "root", "--listen", `127.0.0.1:${port}`]);
    assert.equal(written.code, 0, written.stderr);
    try {
      await exec("systemctl", ["daemon-reload"]);
      await exec("systemctl", ["start", name]);
      const deadline = Date.now() + 30_000;
      let healthy = false;
      while (!healthy && Date.now() < deadline) {
        healthy = await fetch(`http://127.0.0.1:${port}/healthz`).then((response) => response.ok, () => false);
        if (!healthy) await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.ok(healthy, "the coordinator answers under systemd");
      await exec("systemctl", ["stop", name]);
      const state = await exec("systemctl", ["show", "--property=ActiveState,Result", name]);
      assert.match(state.stdout, /ActiveState=inactive/);
      assert.match(state.stdout, /Result=success/, "stopped by SIGTERM within TimeoutStopSec");
    } finally {
      await exec("systemctl", ["stop", name]).catch(() => undefined);
      await rm(`/run/systemd/system/${name}.service`, { force: true });
      await exec("systemctl", ["daemon-reload"]).catch(() => undefined);
      await rm(`/var/lib/${name}`, { recursive: true, force: true });
    }
  });
});
