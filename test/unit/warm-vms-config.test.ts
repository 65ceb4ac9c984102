/** --warm-vms defaults to --max-jobs, takes 0 to turn the pool off, and names itself when wrong; --warm-vm-max-age and --warm-vm-refill parse. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resolveExecutorConfig } from "../../src/executor/config.ts";
import { ValidationError } from "../../src/protocol/index.ts";

const env = { PATH: "/usr/bin:/bin" };

describe("executor config: warm VMs", () => {
  it("defaults the pool to --max-jobs and its maximum age to 30 minutes", () => {
    const config = resolveExecutorConfig({ token: "aet_x", maxJobs: "3" }, env);
    assert.equal(config.warmVms, 3);
    assert.equal(config.warmVmMaxAgeMs, 30 * 60_000);
    assert.equal(config.warmVmRefill, "restore");
  });

  it("takes --warm-vm-refill boot, and rejects another word naming the flag", () => {
    assert.equal(resolveExecutorConfig({ token: "aet_x", warmVmRefill: "boot" }, env).warmVmRefill, "boot");
    assert.equal(resolveExecutorConfig({ token: "aet_x" }, { ...env, AIRLOCK_WARM_VM_REFILL: "boot" }).warmVmRefill, "boot");
    assert.throws(() => resolveExecutorConfig({ token: "aet_x", warmVmRefill: "fork" }, env), (error: Error) => error instanceof ValidationError && /warm-vm-refill/.test(error.message));
  });

  it("takes a flag over the environment, and 0", () => {
    assert.equal(resolveExecutorConfig({ token: "aet_x", warmVms: "0" }, { ...env, AIRLOCK_WARM_VMS: "2" }).warmVms, 0);
    assert.equal(resolveExecutorConfig({ token: "aet_x" }, { ...env, AIRLOCK_WARM_VMS: "2", AIRLOCK_WARM_VM_MAX_AGE: "5m" }).warmVmMaxAgeMs, 5 * 60_000);
  });

  it("rejects a bad count, naming the flag", () => {
    assert.throws(() => resolveExecutorConfig({ token: "aet_x", warmVms: "-1" }, env), (error: Error) => error instanceof ValidationError && /warm-vms/.test(error.message));
    assert.throws(() => resolveExecutorConfig({ token: "aet_x", warmVms: "many" }, env), (error: Error) => error instanceof ValidationError && /warm-vms/.test(error.message));
  });
});
