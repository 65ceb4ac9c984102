/**
 * The batch pages in headless Chromium against a real coordinator and executor (shell runtime):
 * the list (name, latest version, counts by state) and a batch's page: entry states updating live
 * while a job runs, a diff expanded (the job page's renderer), apply for one repository and then
 * for all, the result per repository shown, and each origin really holding the branch with the
 * templated commit; a version uploaded by `airlock batch run --local` shown the same way, with its
 * stored logs, and the earlier version one choice away. No request leaves loopback; nothing breaks
 * the CSP. Screenshots go to
 * test-artifacts/web/.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { gitEnv, run } from "../../src/common/exec.ts";
import { launchBrowser, type Browser } from "../helpers/browser.ts";
import { baseEnv, ENTRY, http, makeRepo, startCluster, type Cluster } from "../helpers/cluster.ts";

let cluster: Cluster;
let browser: Browser | undefined;
let skipReason: string | undefined;
let page: Page;
let gate: string;
const origins = new Map<string, string>();

function spec(gateFile: string): string {
  return [
    "name: ui-rename",
    "description: foo becomes bar (the web UI test)",
    "on:",
    '  - "acme/*"',
    "isolation: none",
    "steps:",
    "  - key: rewrite",
    "    run: |",
    // acme/gamma fails; acme/beta waits for the test to open its gate (so the page sees it run).
    '      test "${{ repository.name }}" != acme/gamma',
    `      if [ "\${{ repository.name }}" = acme/beta ]; then while [ ! -e ${gateFile} ]; do sleep 0.1; done; fi`,
    "      sed -i 's/foo/bar/g' src/app.txt",
    "changesetTemplate:",
    "  title: Rename foo to bar",
    "  branch: batch/ui-rename",
    "  commit:",
    '    message: "Rename foo to bar in ${{ repository.name }}"',
    "    author: { name: UI Test, email: ui@airlock.invalid }",
    "",
  ].join("\n");
}

async function git(repo: string, ...args: string[]): Promise<{ code: number | null; out: string }> {
  const result = await run("git", args, { cwd: repo, env: gitEnv(baseEnv) });
  return { code: result.code, out: result.stdout.toString("utf8").trim() };
}

/** Polls a condition (page.waitForFunction would need eval, which the UI's CSP rightly refuses). */
async function until(predicate: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function entryRow(repository: string) {
  return page.locator(`tbody.batch-entry[data-repository="${repository}"] > tr`).first();
}

async function entryState(repository: string): Promise<string> {
  return (await entryRow(repository).locator(".badge").first().innerText()).trim();
}

describe("batch pages in Chromium", { concurrency: false, timeout: 240_000 }, () => {
  before(async () => {
    const launched = await launchBrowser();
    if (typeof launched === "string") {
      skipReason = launched;
      console.log(`# skipping batch UI tests: ${launched}`);
      return;
    }
    browser = launched;
    cluster = await startCluster({ executorArgs: ["--queues", "batch", "--max-jobs", "3"] });
    gate = join(cluster.dir, "gate");
    for (const [index, name] of ["acme/alpha", "acme/beta", "acme/gamma"].entries()) {
      const dir = await makeRepo(join(cluster.dir, "origins", name), { "README.md": `# ${name}\n`, "src/app.txt": `foo ${index}\nunchanged\nfoo again\n` });
      origins.set(name, dir);
      await cluster.api.addRepository(name, dir);
    }
    page = await browser.newPage();
    await page.goto(`${cluster.coordinator.url}/`);
    await page.getByLabel("API token").fill(cluster.coordinator.apiToken);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { level: 1, name: "Jobs" }).waitFor();
  });

  after(async () => {
    await browser?.close();
    await cluster?.close();
  });

  it("lists batches from the nav: name, latest version, counts by state", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const created = await http(`${cluster.coordinator.url}/api/batches`, {
      method: "POST",
      headers: { authorization: `Bearer ${cluster.coordinator.apiToken}`, "content-type": "application/json" },
      body: JSON.stringify({ spec: spec(gate) }),
    });
    assert.equal(created.status, 201, created.text);
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Batches" }).click();
    await page.getByRole("heading", { level: 1, name: "Batches" }).waitFor();
    const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: "ui-rename" }) });
    await row.waitFor();
    // gamma fails fast, alpha completes, beta waits at the gate: the counts say so, live.
    await until(async () => /1 completed/.test(await row.innerText()) && /1 failed/.test(await row.innerText()), "alpha completed and gamma failed in the list");
    const cells = await row.locator("td").allInnerTexts();
    assert.equal(cells[0], "1", "latest version");
    assert.equal(cells[1], "3", "entries");
    assert.match(cells[2] ?? "", /1 processing/);
    await browser!.screenshot(page, "batch-01-list");
  });

  it("shows each entry's state on the batch page and updates them live", async (t) => {
    if (skipReason) return t.skip(skipReason);
    await page.getByRole("link", { name: "ui-rename" }).click();
    await page.getByRole("heading", { level: 1, name: "Batch ui-rename" }).waitFor();
    await until(async () => (await entryState("acme/alpha")) === "completed", "alpha completed");
    assert.equal(await entryState("acme/gamma"), "failed");
    assert.match(await entryRow("acme/gamma").innerText(), /exited with code 1/);
    assert.equal(await entryState("acme/beta"), "processing");
    await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
    const alpha = await entryRow("acme/alpha").locator("td").allInnerTexts();
    assert.deepEqual(alpha.slice(0, 5).map((cell) => cell.trim()), ["(root)", "completed", "–", "1", "+2 −2"]);
    await browser!.screenshot(page, "batch-02-running");
    await writeFile(gate, "go\n");
    await until(async () => (await entryState("acme/beta")) === "completed", "beta completed without a reload", 30_000);
    await until(async () => (await page.getByRole("status").filter({ hasText: "Live" }).count()) === 0, "the page stops saying Live once all ended");
  });

  it("expands an entry's diff with the diff renderer", async (t) => {
    if (skipReason) return t.skip(skipReason);
    await page.getByRole("button", { name: "Diff of acme/alpha" }).click();
    const detail = page.locator('tbody.batch-entry[data-repository="acme/alpha"] tr.entry-detail');
    await detail.locator(".diff-path", { hasText: "src/app.txt" }).waitFor();
    assert.deepEqual(await detail.locator(".diff-add .diff-code").allInnerTexts(), ["+bar 0", "+bar again"]);
    assert.deepEqual(await detail.locator(".diff-del .diff-code").allInnerTexts(), ["−foo 0", "−foo again"]);
    assert.equal(await page.getByRole("button", { name: "Diff of acme/alpha" }).getAttribute("aria-expanded"), "true");
    // The failed entry has no diff, and says why.
    await page.getByRole("button", { name: "Diff of acme/gamma" }).click();
    await page.locator('tbody.batch-entry[data-repository="acme/gamma"] tr.entry-detail', { hasText: "No diff: the entry failed." }).waitFor();
    assert.equal(await page.getByRole("button", { name: "Apply acme/gamma" }).isDisabled(), true);
    await browser!.screenshot(page, "batch-03-diff");
  });

  it("applies one repository, then all, showing the result per repository; each origin has the branch", async (t) => {
    if (skipReason) return t.skip(skipReason);
    await page.getByRole("button", { name: "Apply acme/alpha" }).click();
    const dialog = page.getByRole("dialog", { name: "Apply acme/alpha?" });
    await dialog.waitFor();
    await dialog.getByRole("button", { name: "Yes, apply" }).click();
    const results = page.locator("section.apply-results");
    await results.getByRole("status").filter({ hasText: "1 pushed" }).waitFor();
    assert.match(await results.locator("tr.apply-row-pushed").innerText(), /acme\/alpha\s+pushed\s+batch\/ui-rename\s+[0-9a-f]{12}/);
    await until(async () => /pushed [0-9a-f]{10}/.test(await entryRow("acme/alpha").innerText()), "alpha's row shows its apply");

    const alpha = origins.get("acme/alpha") ?? "";
    const subject = await git(alpha, "log", "-1", "--format=%s|%an|%ae", "batch/ui-rename");
    assert.equal(subject.code, 0, "the origin has the branch");
    assert.equal(subject.out, "Rename foo to bar in acme/alpha|UI Test|ui@airlock.invalid");
    assert.equal((await git(alpha, "show", "batch/ui-rename:src/app.txt")).out, "bar 0\nunchanged\nbar again");
    assert.equal((await git(origins.get("acme/beta") ?? "", "rev-parse", "--verify", "--quiet", "refs/heads/batch/ui-rename")).code, 1, "beta not applied yet");

    await page.getByRole("button", { name: "Apply all (2)" }).click();
    await page.getByRole("dialog", { name: "Apply batch ui-rename?" }).getByRole("button", { name: "Yes, apply" }).click();
    await results.getByRole("status").filter({ hasText: /1 unchanged/ }).waitFor();
    assert.match(await results.getByRole("status").innerText(), /1 pushed/);
    assert.match(await results.locator("tr.apply-row-unchanged").innerText(), /acme\/alpha\s+unchanged/);
    assert.match(await results.locator("tr.apply-row-pushed").innerText(), /acme\/beta\s+pushed/);
    const beta = await git(origins.get("acme/beta") ?? "", "log", "-1", "--format=%s", "batch/ui-rename");
    assert.equal(beta.out, "Rename foo to bar in acme/beta");
    assert.equal((await git(origins.get("acme/gamma") ?? "", "rev-parse", "--verify", "--quiet", "refs/heads/batch/ui-rename")).code, 1, "the failed entry is not applied");
    await browser!.screenshot(page, "batch-04-applied");
  });

  it("shows a version uploaded by `batch run --local` like a server-side one, its logs one click away", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const file = join(cluster.dir, "ui-rename.yaml");
    await writeFile(file, spec(gate));
    const local = spawnSync(process.execPath, [ENTRY, "batch", "run", file, "--local", "--runtime", "shell", "--work-dir", join(cluster.dir, "local")], {
      env: { ...baseEnv, AIRLOCK_URL: cluster.coordinator.url, AIRLOCK_TOKEN: cluster.coordinator.apiToken },
      encoding: "utf8",
    });
    assert.equal(local.status, 1, `gamma fails locally too: ${local.stdout}\n${local.stderr}`);
    assert.match(local.stdout, /uploaded as version 2 of batch ui-rename/);
    await page.goto(`${cluster.coordinator.url}/batches/ui-rename`);
    await page.getByRole("heading", { level: 1, name: "Batch ui-rename" }).waitFor();
    const summary = page.locator("dl.summary");
    await summary.getByText("locally (uploaded)").waitFor();
    assert.match(await summary.innerText(), /2 of 2/);
    assert.equal(await entryState("acme/alpha"), "completed");
    assert.equal(await entryState("acme/gamma"), "failed");
    await page.getByRole("button", { name: "Log of acme/alpha" }).click();
    const log = page.locator('tbody.batch-entry[data-repository="acme/alpha"] pre.entry-log');
    await log.filter({ hasText: "── rewrite (completed) ──" }).waitFor();
    assert.match(await log.innerText(), /── prepare \(completed\) ──[\s\S]*checked out acme\/alpha/);
    await page.getByRole("button", { name: "Diff of acme/beta" }).click();
    await page.locator('tbody.batch-entry[data-repository="acme/beta"] .diff-path', { hasText: "src/app.txt" }).waitFor();
    await browser!.screenshot(page, "batch-05-local-version");
    // The earlier version is one choice away.
    await page.getByLabel("Version").selectOption("1");
    await page.waitForURL(/\/batches\/ui-rename\?version=1$/);
    await summary.getByText("on executors").waitFor();
    // Its entries keep their last apply's result: alpha was found unchanged by "Apply all".
    assert.match(await entryRow("acme/alpha").innerText(), /unchanged [0-9a-f]{10}/);
    assert.match(await entryRow("acme/beta").innerText(), /pushed [0-9a-f]{10}/);
  });

  it("sent no request off loopback and logged no console error", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const offLoopback = browser!.requests.filter((url) => !/^(https?:\/\/(127\.0\.0\.1|localhost)(:\d+)?\/|data:|blob:)/.test(url));
    assert.deepEqual(offLoopback, []);
    assert.deepEqual(browser!.problems, []);
    assert.ok(existsSync(gate));
  });
});
