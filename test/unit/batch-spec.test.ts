/** The batch spec parser: normalization and defaults, and errors that name the field and the line. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseBatchSpec } from "../../src/protocol/batch.ts";
import { ValidationError } from "../../src/protocol/index.ts";

const FULL = `name: upgrade-lib
description: |
  Upgrade lib everywhere.
on:
  - acme/web
  - "tools/*"
  - repository: acme/api
    branch: release
  - repositoriesMatching:
      path: package.json
      in: "acme/**"
workspaces:
  - rootAtLocationOf: package.json
    in: "acme/mono"
    onlyFetchWorkspace: true
steps:
  - key: bump
    image: node:22
    commands:
      - npm install lib@2
      - echo done
    env:
      TARGET: "\${{ repository.name }}"
    dir: sub
    timeout: 5m
    outputs:
      version: { value: "\${{ trim(step.stdout) }}", format: json }
      report: { fromFile: out/report.txt }
  - run: echo \${{ outputs.version.major }} > VERSION
    image: busybox
    if: "\${{ previous_step.exit_code == 0 }}"
    files:
      notes/README.md: "for \${{ repository.name }}"
changesetTemplate:
  title: Upgrade lib
  body: Done by a batch.
  branch: upgrade/\${{ batch.name }}
  commit:
    message: "Upgrade lib in \${{ repository.name }}"
    author: { name: Bot, email: bot@example.com }
queue: heavy
isolation: container
resources: { memory: 1g, cpus: 2 }
timeout: 45m
secrets: { NPM_TOKEN: s3cret }
`;

function error(text: string): ValidationError {
  try {
    parseBatchSpec(text);
  } catch (caught) {
    assert.ok(caught instanceof ValidationError, String(caught));
    return caught;
  }
  return assert.fail("no error");
}

describe("batch spec", () => {
  it("normalizes every field, keeping job options for the job spec", () => {
    const spec = parseBatchSpec(FULL);
    assert.equal(spec.name, "upgrade-lib");
    assert.equal(spec.description, "Upgrade lib everywhere.\n");
    assert.deepEqual(spec.on, [
      { repository: "acme/web" },
      { repository: "tools/*" },
      { repository: "acme/api", branch: "release" },
      { repositoriesMatching: { path: "package.json", in: "acme/**" } },
    ]);
    assert.deepEqual(spec.workspaces, [{ rootAtLocationOf: "package.json", in: "acme/mono", onlyFetchWorkspace: true }]);
    assert.deepEqual(spec.steps[0], {
      key: "bump",
      image: "node:22",
      commands: ["npm install lib@2", "echo done"],
      dir: "sub",
      env: { TARGET: "${{ repository.name }}" },
      timeoutMs: 300_000,
      outputs: { version: { value: "${{ trim(step.stdout) }}", format: "json" }, report: { fromFile: "out/report.txt", format: "text" } },
      files: {},
    });
    assert.deepEqual(spec.steps[1], {
      key: "step-2",
      image: "busybox",
      commands: ["echo ${{ outputs.version.major }} > VERSION"],
      dir: ".",
      env: {},
      if: "${{ previous_step.exit_code == 0 }}",
      outputs: {},
      files: { "notes/README.md": "for ${{ repository.name }}" },
    });
    assert.deepEqual(spec.changesetTemplate, {
      title: "Upgrade lib",
      body: "Done by a batch.",
      branch: "upgrade/${{ batch.name }}",
      commit: { message: "Upgrade lib in ${{ repository.name }}", author: { name: "Bot", email: "bot@example.com" } },
    });
    assert.deepEqual(spec.job, { queue: "heavy", isolation: "container", resources: { memory: "1g", cpus: 2 }, timeout: "45m", secrets: { NPM_TOKEN: "s3cret" } });
  });

  it("fills defaults: queue batch, branch batch/<name>, the title as message, Airlock as author", () => {
    const spec = parseBatchSpec("name: small\non: [acme/web]\nsteps:\n  - run: \"true\"\n    image: busybox\n");
    assert.deepEqual(spec.job, { queue: "batch" });
    assert.deepEqual(spec.workspaces, []);
    assert.deepEqual(spec.changesetTemplate, { title: "small", body: "", branch: "batch/${{ batch.name }}", commit: { message: "small", author: { name: "Airlock", email: "airlock@localhost" } } });
  });

  it("names the field and the line of each problem", () => {
    const cases: [string, RegExp, string | undefined][] = [
      [FULL.replace("name: upgrade-lib", "name: upgrade lib"), /^invalid batch spec: line 1: name: must be 1-64 letters/, "name"],
      [FULL.replace("    dir: sub\n", "    dir: ../escape\n"), /line 24: steps\[0\]\.dir: path "\.\.\/escape" contains '\.\.'/, "steps.0.dir"],
      [FULL.replace("    timeout: 5m\n", "    timeout: soon\n"), /line 25: steps\[0\]\.timeout: /, "steps.0.timeout"],
      [FULL.replace("      - echo done\n", "      - echo done\n    run: also\n"), /line 17: steps\[0\]: give exactly one of run or commands/, "steps.0"],
      [FULL.replace("{ fromFile: out/report.txt }", "{ fromFile: /etc/passwd }"), /line 28: steps\[0\]\.outputs\.report\.fromFile: path "\/etc\/passwd" is absolute/, undefined],
      [FULL.replace("notes/README.md", "../x"), /line 33: steps\[1\]\.files\.\.\.\/x: path "\.\.\/x" contains '\.\.'/, undefined],
      [FULL.replace("TARGET: \"${{ repository.name }}\"", "TARGET: \"${{ repository.url }}\""), /line 23: steps\[0\]\.env\.TARGET: template error in step 1 at column 5: unknown variable "repository\.url"/, "steps.0.env.TARGET"],
      [FULL.replace("outputs.version.major", "outputs.versions"), /line 29: steps\[1\].run: .*output "versions" is not declared by an earlier step \(declared: version, report\)/, "steps.1.run"],
      [FULL.replace('"${{ previous_step.exit_code == 0 }}"', '"${{ previous_step.exit == 0 }}"'), /line 31: steps\[1\]\.if: .*unknown variable "previous_step\.exit"/, "steps.1.if"],
      [FULL.replace('"${{ trim(step.stdout) }}"', '"${{ trim(previous_step.stdout) }}"'), /line 27: steps\[0\]\.outputs\.version\.value: .*"previous_step" is not available here/, undefined],
      [FULL.replace("    image: node:22\n", ""), /line 17: steps\[0\]: step 1 names no image, but isolation container runs every step in an image/, "steps.0"],
      [FULL.replace("resources: { memory: 1g, cpus: 2 }", "resources: { memory: lots }"), /line 43: resources\.memory: /, "resources.memory"],
      [FULL.replace("queue: heavy", "queue: heavy/queue"), /line 41: queue: /, "queue"],
      [FULL.replace("    onlyFetchWorkspace: true\n", "    onlyFetchWorkspace: true\n    depth: 2\n"), /line 16: workspaces\[0\]\.depth: unknown field "depth"/, "workspaces.0.depth"],
      [FULL.replace("rootAtLocationOf: package.json", "rootAtLocationOf: a/package.json"), /line 13: workspaces\[0\]\.rootAtLocationOf: must be a file name/, undefined],
      [FULL.replace('branch: upgrade/${{ batch.name }}', "branch: upgrade/${{ batch.name"), /line 37: changesetTemplate\.branch: template error at column 9: unclosed/, "changesetTemplate.branch"],
      ["name: x\non: []\nsteps:\n  - run: \"true\"\n", /line 2: on: name at least one repository/, "on"],
      ["name: x\non: [acme/web]\nsteps:\n  - run: a\n  - run: b\n    key: step-1\n", /line 6: steps\[1\]\.key: duplicate step key "step-1"/, "steps.1.key"],
      ["name: x\non: [acme/web\n", /^invalid batch spec: line \d+: not valid YAML/, undefined],
      ["- just\n- a list\n", /^invalid batch spec: line 1: /, undefined],
    ];
    for (const [text, pattern, field] of cases) {
      const failure = error(text);
      assert.match(failure.message, pattern);
      if (field !== undefined) assert.equal(failure.field, field, failure.message);
    }
  });
});
