/**
 * The whole path over TLS: the coordinator serves https with a certificate from a private CA the
 * test generates; the executor (API and git) and the CLI verify it with --ca, and refuse without.
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ApiClient } from "../../src/cli/api-client.ts";
import { startAirlock, startLocalCoordinator, type LocalCoordinator, type ManagedProcess } from "../../src/cli/local-cluster.ts";
import { baseEnv, ENTRY, makeRepo, tempDir, waitForJob } from "../helpers/cluster.ts";

function generateCertificates(dir: string): { ca: string; cert: string; key: string } {
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Airlock Test CA", "-keyout", "ca.key", "-out", "ca.pem");
  ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr");
  const extensions = join(dir, "ext.cnf");
  execFileSync("sh", ["-c", `printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ${extensions}`]);
  ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", extensions, "-out", "server.pem");
  return { ca: join(dir, "ca.pem"), cert: join(dir, "server.pem"), key: join(dir, "server.key") };
}

describe("TLS", () => {
  let dir: string;
  let certs: { ca: string; cert: string; key: string };
  let coordinator: LocalCoordinator;
  let api: ApiClient;
  const processes: ManagedProcess[] = [];

  before(async () => {
    dir = await tempDir();
    certs = generateCertificates(dir);
    coordinator = await startLocalCoordinator({
      entry: ENTRY,
      dataDir: join(dir, "coordinator"),
      env: baseEnv,
      tls: { certPath: certs.cert, keyPath: certs.key, caPem: readFileSync(certs.ca) },
    });
    processes.push(coordinator);
    api = new ApiClient({ url: coordinator.url, token: coordinator.apiToken, caPath: certs.ca });
  });
  after(async () => {
    for (const process of processes) await process.stop(5000);
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("runs a job with a repository end to end over https, verifying the certificate", async () => {
    assert.match(coordinator.url, /^https:/);
    await api.addRepository("acme/tls", await makeRepo(join(dir, "repo"), { "a.txt": "over plain text\n" }));
    processes.push(
      startAirlock(ENTRY, ["executor", "run", "--url", coordinator.url, "--ca", certs.ca, "--runtime", "shell", "--data", join(dir, "executor"), "--heartbeat-interval", "500ms"], {
        env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: coordinator.executorToken },
        logFile: join(dir, "executor.log"),
      }),
    );
    const submitted = await api.submit({ repository: "acme/tls", isolation: "none", steps: [{ commands: ["sed -i 's/plain text/TLS/' a.txt"] }], outputs: { diff: true } });
    const job = await waitForJob(api, submitted.id);
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    assert.match((await api.artifactBytes(job.id, "diff")).toString(), /\+over TLS/);
  });

  it("refuses a coordinator whose certificate it cannot verify, and accepts it with --ca", () => {
    const validate = (...extra: string[]) =>
      spawnSync(process.execPath, [ENTRY, "executor", "validate", "--url", coordinator.url, "--runtime", "shell", "--data", join(dir, "validate"), ...extra], {
        env: { ...baseEnv, AIRLOCK_EXECUTOR_TOKEN: coordinator.executorToken },
        encoding: "utf8",
      });
    const refused = validate();
    assert.equal(refused.status, 1, refused.stdout);
    assert.match(refused.stdout, /FAIL.*(certificate|self.signed|verify)/i);
    const accepted = validate("--ca", certs.ca);
    assert.equal(accepted.status, 0, accepted.stdout);
    assert.match(accepted.stdout, /executor token accepted/);
    const cli = spawnSync(process.execPath, [ENTRY, "jobs", "list", "--url", coordinator.url, "--token", coordinator.apiToken], { env: baseEnv, encoding: "utf8" });
    assert.notEqual(cli.status, 0);
    assert.match(cli.stderr, /certificate/i);
  });
});
