/**
 * SecretStore cases of the store conformance suite (run by storeConformance for every backend):
 * sealed values stored beside a masked spec, and deleted by every path that ends a job.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, it } from "node:test";
import { JobSpecInput, SECRET_MASK, type JobSpecInput as SpecInput } from "../../src/protocol/index.ts";
import type { AttemptRef, SealedSecret, Store } from "../../src/store/index.ts";
import type { StoreFactory } from "./conformance.ts";

const T0 = Date.UTC(2026, 0, 1);
const LEASE = 20_000;

function sealed(name: string, keyId = "k1"): SealedSecret {
  return { name, keyId, nonce: randomBytes(12), ciphertext: randomBytes(24) };
}

function spec(overrides: Partial<SpecInput> = {}) {
  return JobSpecInput.parse({
    isolation: "none",
    steps: [{ key: "one", commands: ["true"] }],
    secrets: { API_KEY: "value-one", DB_PASSWORD: "value-two" },
    registryAuth: { "ghcr.io": { username: "bot", password: "value-three" } },
    ...overrides,
  });
}

const NAMES = ["registryAuth.ghcr.io", "secrets.API_KEY", "secrets.DB_PASSWORD"];

export function secretStoreConformance(backend: string, factory: StoreFactory): void {
  describe(`SecretStore conformance: ${backend}`, () => {
    let store: Store;
    let claims = 0;
    beforeEach(async () => {
      store = await factory.create();
    });
    afterEach(async () => {
      await factory.destroy(store);
    });

    async function enqueue(overrides: Partial<SpecInput> = {}) {
      const job = await store.jobs.enqueue({ spec: spec(overrides), ref: null, commit: null, secrets: NAMES.map((name) => sealed(name)) }, T0);
      return job.id;
    }

    async function claim(now = T0 + 10): Promise<AttemptRef> {
      claims += 1;
      const executorName = `exec-${claims}`;
      const job = await store.jobs.claim(
        { executor: { executorName, hostname: "h", version: "t", protocolVersion: 1, runtime: "shell", isolation: ["none"], network: "internet", queues: ["default"] }, tokenHash: `t-${backend}-${claims}-${Math.random()}`, leaseMs: LEASE },
        now,
      );
      assert.ok(job, "a job to claim");
      return { jobId: job.id, attempt: job.attempt, repository: job.repository, executorName };
    }

    const names = async (jobId: number) => (await store.secrets.forJob(jobId)).map((secret) => secret.name);

    it("stores the spec masked and the sealed values apart, byte for byte", async () => {
      const given = NAMES.map((name) => sealed(name));
      const job = await store.jobs.enqueue({ spec: spec(), ref: null, commit: null, secrets: given }, T0);
      const stored = (await store.jobs.getJob(job.id))?.job.spec;
      assert.deepEqual(stored?.secrets, { API_KEY: SECRET_MASK, DB_PASSWORD: SECRET_MASK });
      assert.equal(stored?.registryAuth?.["ghcr.io"]?.password, SECRET_MASK);
      assert.equal(stored?.registryAuth?.["ghcr.io"]?.username, "bot");
      const back = await store.secrets.forJob(job.id);
      assert.deepEqual(
        back.map((secret) => [secret.name, secret.keyId, Buffer.from(secret.nonce).toString("hex"), Buffer.from(secret.ciphertext).toString("hex")]),
        given.map((secret) => [secret.name, secret.keyId, Buffer.from(secret.nonce).toString("hex"), Buffer.from(secret.ciphertext).toString("hex")]),
      );
      assert.deepEqual((await store.secrets.list()).map((secret) => [secret.owner, secret.name]), NAMES.map((name) => [{ jobId: job.id }, name]));
    });

    it("refuses a job whose sealed values do not match its secret names, storing nothing", async () => {
      await assert.rejects(store.jobs.enqueue({ spec: spec(), ref: null, commit: null }, T0), /do not match/);
      await assert.rejects(store.jobs.enqueue({ spec: spec(), ref: null, commit: null, secrets: [sealed("secrets.API_KEY")] }, T0), /do not match/);
      await assert.rejects(store.jobs.enqueue({ spec: spec({ secrets: {} }), ref: null, commit: null, secrets: [sealed("secrets.API_KEY")] }, T0), /do not match/);
      assert.deepEqual(await store.jobs.listJobs({ limit: 10 }), []);
      assert.deepEqual(await store.secrets.list(), []);
    });

    for (const outcome of ["completed", "failed"] as const) {
      it(`deletes a job's secrets when its attempt ends ${outcome}`, async () => {
        const id = await enqueue();
        const ref = await claim();
        assert.deepEqual(await names(id), NAMES, "kept while the job runs");
        await store.jobs.finishAttempt(ref, outcome, null, T0 + 20);
        assert.deepEqual(await names(id), []);
      });
    }

    it("keeps them through an errored attempt that is retried, deletes them when the last one errors", async () => {
      const id = await enqueue({ maxAttempts: 2 });
      assert.equal((await store.jobs.finishAttempt(await claim(), "errored", "sandbox broke", T0 + 20)).state, "queued");
      assert.deepEqual(await names(id), NAMES);
      assert.equal((await store.jobs.finishAttempt(await claim(T0 + 30), "errored", "again", T0 + 40)).state, "errored");
      assert.deepEqual(await names(id), []);
    });

    it("deletes them when a queued job is canceled, and when a running one ends canceled", async () => {
      const queued = await enqueue();
      await store.jobs.requestCancel(queued, T0 + 5);
      assert.deepEqual(await names(queued), []);
      const running = await enqueue();
      const ref = await claim();
      await store.jobs.requestCancel(running, T0 + 15);
      assert.deepEqual(await names(running), NAMES, "kept until the executor stops it");
      assert.equal((await store.jobs.finishAttempt(ref, "completed", null, T0 + 20)).state, "canceled");
      assert.deepEqual(await names(running), []);
    });

    it("keeps them when a lapsed lease requeues the job, deletes them when the reaper errors it", async () => {
      const id = await enqueue({ maxAttempts: 2 });
      await claim(T0);
      assert.equal((await store.jobs.reapExpiredLeases(T0 + LEASE + 1))[0]?.state, "queued");
      assert.deepEqual(await names(id), NAMES);
      await claim(T0 + LEASE + 2);
      assert.equal((await store.jobs.reapExpiredLeases(T0 + 3 * LEASE))[0]?.state, "errored");
      assert.deepEqual(await names(id), []);
    });

    it("deletes them when the reaper finds a canceled job's lease lapsed", async () => {
      const id = await enqueue({ maxAttempts: 3 });
      await claim(T0);
      await store.jobs.requestCancel(id, T0 + 1);
      assert.equal((await store.jobs.reapExpiredLeases(T0 + LEASE + 1))[0]?.state, "canceled");
      assert.deepEqual(await names(id), []);
    });

    it("stores a batch version's spec and text masked, its values apart, and lists and reseals them", async () => {
      const spec = { name: "b", description: "", job: { isolation: "none", secrets: { TOKEN: "batch-value-1", LONGER_TOKEN: "batch-value-1-and-more" } }, steps: [] };
      const specText = "name: b\njob:\n  secrets: { TOKEN: batch-value-1, LONGER_TOKEN: batch-value-1-and-more }\n";
      const given = [sealed("secrets.TOKEN"), sealed("secrets.LONGER_TOKEN")];
      await assert.rejects(store.batches.createVersion({ name: "b", description: "", spec, specText, source: "server", entries: [] }, T0), /do not match/);
      const created = await store.batches.createVersion({ name: "b", description: "", spec, specText, secrets: given, source: "server", entries: [] }, T0);
      const version = await store.batches.getVersion(created.batch.id, created.version.version);
      assert.deepEqual((version?.spec as typeof spec).job.secrets, { TOKEN: SECRET_MASK, LONGER_TOKEN: SECRET_MASK });
      assert.equal(version?.specText, `name: b\njob:\n  secrets: { TOKEN: ${SECRET_MASK}, LONGER_TOKEN: ${SECRET_MASK} }\n`);
      const back = await store.batches.versionSecrets(created.batch.id, created.version.version);
      assert.deepEqual(back.map((secret) => secret.name), ["secrets.LONGER_TOKEN", "secrets.TOKEN"]);
      const owner = { batchId: created.batch.id, version: created.version.version };
      assert.deepEqual((await store.secrets.list()).map((secret) => [secret.owner, secret.name]), [[owner, "secrets.LONGER_TOKEN"], [owner, "secrets.TOKEN"]]);
      const first = back[0] as SealedSecret;
      assert.equal(await store.secrets.reseal(owner, first, sealed(first.name, "k2")), true);
      assert.equal(await store.secrets.reseal(owner, first, sealed(first.name, "k3")), false);
      assert.equal((await store.batches.versionSecrets(owner.batchId, owner.version))[0]?.keyId, "k2");
    });

    it("reseals a value only while it is as it was read", async () => {
      const id = await enqueue();
      const [first] = await store.secrets.forJob(id);
      assert.ok(first);
      const next = sealed(first.name, "k2");
      assert.equal(await store.secrets.reseal({ jobId: id }, first, next), true);
      assert.equal(await store.secrets.reseal({ jobId: id }, first, sealed(first.name, "k3")), false, "a second reseal from the old sealing finds it changed");
      const now = (await store.secrets.forJob(id)).find((secret) => secret.name === first.name);
      assert.equal(now?.keyId, "k2");
      assert.deepEqual(Buffer.from(now?.ciphertext ?? []), Buffer.from(next.ciphertext));
      await store.jobs.requestCancel(id, T0 + 1);
      assert.equal(await store.secrets.reseal({ jobId: id }, next, sealed(first.name, "k4")), false, "gone with its job");
    });
  });
}
