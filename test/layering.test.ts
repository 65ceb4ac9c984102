/** DESIGN.md's dependency rules, checked on the sources (the lint config enforces them too). */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";
import { describe, it } from "node:test";
import { ROOT } from "./helpers/cluster.ts";

const FORBIDDEN: Record<string, string[]> = {
  protocol: ["common", "store", "coordinator", "executor", "runtimes", "egress", "cli", "indexing"],
  common: ["store", "coordinator", "executor", "runtimes", "egress", "cli", "indexing"],
  store: ["coordinator", "executor", "runtimes", "cli"],
  runtimes: ["store", "coordinator", "executor", "cli"],
  coordinator: ["runtimes", "executor", "egress", "cli"],
  executor: ["store", "coordinator", "cli"],
  egress: ["store", "coordinator", "executor", "runtimes", "cli"],
  indexing: ["store", "coordinator", "executor", "runtimes", "egress", "cli"],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : /\.tsx?$/.test(path) ? [path] : [];
  });
}

describe("layering", () => {
  it("no component imports what DESIGN.md forbids, and protocol imports nothing of Node", () => {
    const problems: string[] = [];
    for (const file of files(join(ROOT, "src"))) {
      const component = relative(join(ROOT, "src"), file).split("/")[0] ?? "";
      const source = readFileSync(file, "utf8");
      for (const match of source.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)) {
        const specifier = match[1] ?? "";
        if (component === "protocol" && specifier.startsWith("node:")) problems.push(`${relative(ROOT, file)} imports ${specifier}`);
        if (!specifier.startsWith(".")) continue;
        const target = relative(join(ROOT, "src"), resolve(dirname(file), specifier)).split("/")[0] ?? "";
        if (FORBIDDEN[component]?.includes(target)) problems.push(`${relative(ROOT, file)} (${component}) imports ${specifier} (${target})`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it("the web UI uses only the protocol of Airlock and nothing of Node; the coordinator never imports it", () => {
    const problems: string[] = [];
    for (const file of files(join(ROOT, "web", "src"))) {
      const source = readFileSync(file, "utf8");
      for (const match of source.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)) {
        const specifier = match[1] ?? "";
        if (specifier.startsWith("node:")) problems.push(`${relative(ROOT, file)} imports ${specifier}`);
        const target = relative(ROOT, resolve(dirname(file), specifier));
        if (specifier.startsWith(".") && target.startsWith("src/") && !target.startsWith("src/protocol/")) problems.push(`${relative(ROOT, file)} imports ${specifier}`);
      }
    }
    for (const file of files(join(ROOT, "src"))) {
      for (const match of readFileSync(file, "utf8").matchAll(/from\s+"([^"]+)"/g)) {
        const specifier = match[1] ?? "";
        if (specifier.startsWith(".") && relative(ROOT, resolve(dirname(file), specifier)).startsWith("web/")) problems.push(`${relative(ROOT, file)} imports ${specifier}`);
      }
    }
    assert.deepEqual(problems, []);
  });
});
