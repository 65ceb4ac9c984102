/** specToInput (src/protocol/spec-input.ts): a stored spec, submitted again, is the same spec. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { hiddenValues, JobSpecInput, maskSecrets, specToInput } from "../../src/protocol/index.ts";

describe("specToInput", () => {
  it("round-trips every field through JobSpecInput", () => {
    const specs = [
      JobSpecInput.parse({ steps: [{ commands: "true" }] }),
      JobSpecInput.parse({
        queue: "batch",
        repository: "acme/web",
        commit: "0123456789abcdef0123456789abcdef01234567",
        shallowClone: false,
        fetchTags: true,
        sparseCheckout: ["src/*"],
        files: { "in.json": { content: "{}" }, "bin.dat": { content: "AAE=", encoding: "base64", mode: 0o600 } },
        steps: [
          { key: "one", image: "airlock-test/busybox", commands: ["echo 1", "echo 2"], dir: "src", env: { LANG: "C" }, timeout: "90s" },
          { commands: "echo 3", timeout: 1.5 },
        ],
        secrets: { TOKEN: "t" },
        resources: { cpus: 1.5, memory: "512m", pids: 64, disk: "1g" },
        timeout: "1h30m",
        isolation: "container",
        outputs: { diff: true, paths: ["report.json"] },
        maxAttempts: 5,
        registryAuth: { "registry.test": { username: "u", password: "p" } },
      }),
    ];
    for (const spec of specs) assert.deepEqual(JobSpecInput.parse(specToInput(spec)), spec);
  });

  it("names the values a shown spec hides", () => {
    const spec = maskSecrets(JobSpecInput.parse({ steps: [{ commands: "true" }], secrets: { A: "1", B: "2" }, registryAuth: { "r.test": { username: "u", password: "p" } } }));
    assert.deepEqual(hiddenValues(spec), { secrets: ["A", "B"], registryHosts: ["r.test"] });
    assert.deepEqual(hiddenValues(JobSpecInput.parse({ steps: [{ commands: "true" }] })), { secrets: [], registryHosts: [] });
  });
});
