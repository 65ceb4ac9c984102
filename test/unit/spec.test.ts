import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { JobSpec, JobSpecInput, parseDuration, parseSize, workspacePathProblem } from "../../src/protocol/index.ts";

describe("job spec", () => {
  it("fills defaults, converts units and names steps", () => {
    const spec = JobSpecInput.parse({
      repository: "acme/web",
      steps: [{ commands: "make" }, { key: "test", commands: ["make test"], timeout: "90s" }],
      resources: { memory: "512m", disk: "1g", cpus: 1.5, pids: 128 },
      timeout: "1h30m",
    });
    assert.equal(spec.queue, "default");
    assert.equal(spec.commit, "HEAD");
    assert.equal(spec.isolation, "namespace");
    assert.equal(spec.maxAttempts, 3);
    assert.deepEqual(spec.steps.map((step) => [step.key, step.commands, step.dir, step.timeoutMs]), [
      ["step-1", ["make"], ".", undefined],
      ["test", ["make test"], ".", 90_000],
    ]);
    assert.deepEqual(spec.resources, { cpus: 1.5, memoryBytes: 512 * 1024 ** 2, diskBytes: 1024 ** 3, pids: 128 });
    assert.equal(spec.timeoutMs, 90 * 60_000);
    assert.equal(JobSpecInput.parse({ steps: [{ commands: "x" }] }).timeoutMs, 30 * 60_000, "the default job timeout is 30 minutes");
    assert.deepEqual(JobSpec.parse(spec), spec, "the normalized form parses to itself");
  });

  it("refuses bad specs with the field named", () => {
    const cases: [unknown, RegExp][] = [
      [{ steps: [] }, /steps/],
      [{ steps: [{ commands: ["x"] }], bogus: 1 }, /bogus/],
      [{ steps: [{ commands: ["x"], dir: "../up" }] }, /steps\.0\.dir.*\.\./],
      [{ steps: [{ commands: ["x"] }], files: { "/etc/passwd": { content: "x" } } }, /absolute/],
      [{ steps: [{ commands: ["x"] }], files: { "a/../../b": { content: "x" } } }, /\.\./],
      [{ steps: [{ commands: ["x"] }], outputs: { paths: ["../x"] } }, /outputs\.paths/],
      [{ steps: [{ commands: ["x"] }], timeout: "soon" }, /timeout.*not a duration/],
      [{ steps: [{ commands: ["x"] }], resources: { memory: "lots" } }, /memory.*not a size/],
      [{ steps: [{ key: "prepare", commands: ["x"] }] }, /reserved/],
      [{ steps: [{ key: "a", commands: ["x"] }, { key: "a", commands: ["y"] }] }, /duplicate/],
      [{ steps: [{ commands: ["x"] }], commit: "main" }, /commit needs a repository/],
      [{ steps: [{ commands: ["x"] }], isolation: "total" }, /isolation/],
      [{ steps: [{ commands: ["x"] }], repository: "../etc" }, /repository/],
    ];
    for (const [input, pattern] of cases) {
      const result = JobSpecInput.safeParse(input);
      assert.equal(result.success, false, JSON.stringify(input));
      const text = result.error?.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ") ?? "";
      assert.match(text, pattern, JSON.stringify(input));
    }
  });

  it("parses durations and sizes", () => {
    assert.equal(parseDuration("250ms"), 250);
    assert.equal(parseDuration("1h30m"), 5_400_000);
    assert.equal(parseDuration("45"), 45_000);
    assert.equal(parseDuration("5 minutes"), undefined);
    assert.equal(parseSize("64m"), 64 * 1024 ** 2);
    assert.equal(parseSize("1GiB"), 1024 ** 3);
    assert.equal(parseSize("12"), 12);
    assert.equal(parseSize("2 parsecs"), undefined);
  });

  it("keeps workspace paths inside the workspace", () => {
    assert.equal(workspacePathProblem("src/a.txt"), undefined);
    assert.match(workspacePathProblem("../a") ?? "", /\.\./);
    assert.match(workspacePathProblem("/abs") ?? "", /absolute/);
    assert.match(workspacePathProblem("a\\b") ?? "", /backslash/);
    assert.match(workspacePathProblem(".git/config") ?? "", /\.git/);
    assert.match(workspacePathProblem("x\0y") ?? "", /NUL/);
  });
});
