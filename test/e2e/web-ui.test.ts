/**
 * The web UI in headless Chromium against a real coordinator and executor (shell runtime):
 * sign-in, the jobs list and its filters, live logs, ANSI colours, a 100k-line log, the diff,
 * cancel, run again (with secrets re-entered), executors, queue charts, keyboard use, and that
 * no request leaves loopback and nothing breaks the CSP. Screenshots go to test-artifacts/web/.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { isTerminal, PROTOCOL_VERSION } from "../../src/protocol/index.ts";
import { launchBrowser, type Browser } from "../helpers/browser.ts";
import { makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { bwrapUnavailable, TEST_IMAGES } from "../helpers/bwrap.ts";
import { existsSync } from "node:fs";

const egressUnavailable = existsSync(join(TEST_IMAGES, "net", "oci", "index.json")) ? undefined : `the test image airlock-test/net is missing in ${TEST_IMAGES}`;

let cluster: Cluster;
let browser: Browser | undefined;
let skipReason: string | undefined;
let page: Page;

async function signIn(target: Page, token: string): Promise<void> {
  await target.goto(`${cluster.coordinator.url}/`);
  await target.getByLabel("API token").fill(token);
  await target.getByRole("button", { name: "Sign in" }).click();
}

async function openJob(id: number): Promise<void> {
  await page.goto(`${cluster.coordinator.url}/jobs/${id}`);
  await page.getByRole("heading", { level: 1, name: `Job ${id}` }).waitFor();
}

/** Evaluates an expression in the page (as text: the server's TypeScript has no DOM types). */
function inPage<T>(expression: string): Promise<T> {
  return page.evaluate<T>(expression);
}

/** Polls a condition (page.waitForFunction would need eval, which the UI's CSP rightly refuses). */
async function until(predicate: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function rows() {
  return page.locator("table.jobs tbody tr");
}

/**
 * True when the list shows exactly one row and it matches `pattern`, read in one call: a list
 * that re-renders between a count and a read (the previous filter's answer landing) is not a
 * failure, only not yet the list waited for.
 */
async function onlyRow(pattern: RegExp): Promise<boolean> {
  const texts = await rows().allInnerTexts();
  return texts.length === 1 && pattern.test(texts[0] ?? "");
}

function badge(state: string) {
  return page.locator(".page-heading .badge", { hasText: state });
}

describe("web UI in Chromium", { concurrency: false, timeout: 240_000 }, () => {
  before(async () => {
    const launched = await launchBrowser();
    if (typeof launched === "string") {
      skipReason = launched;
      console.log(`# skipping browser tests: ${launched}`);
      return;
    }
    browser = launched;
    cluster = await startCluster({ executorArgs: ["--max-jobs", "2"] });
    const repo = await makeRepo(join(cluster.dir, "repo"), { "README.md": "# demo\n", "src/greeting.txt": "hello foo\nsecond line\n" });
    await cluster.api.addRepository("acme/web", repo);
    page = await browser.newPage();
  });

  after(async () => {
    await browser?.close();
    await cluster?.close();
  });

  it("refuses a wrong token with a clear message and shows nothing", async (t) => {
    if (skipReason) return t.skip(skipReason);
    await signIn(page, "not-the-token");
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.match(await alert.innerText(), /refused this token/);
    assert.equal(await page.getByRole("navigation", { name: "Main" }).count(), 0, "no app chrome without a valid token");
    await browser!.screenshot(page, "01-sign-in-refused");
  });

  it("signs in with the API token, keeps it for the tab only, and lists jobs", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const job = await cluster.api.submit({ isolation: "none", steps: [{ key: "hello", commands: ["echo hello from the list"] }] });
    await waitForJob(cluster.api, job.id);
    await signIn(page, cluster.coordinator.apiToken);
    await page.getByRole("heading", { level: 1, name: "Jobs" }).waitFor();
    const stored = await inPage<{ session: string | null; local: number; cookie: string }>(
      '({ session: sessionStorage.getItem("airlock.apiToken"), local: localStorage.length, cookie: document.cookie })',
    );
    assert.equal(stored.session, cluster.coordinator.apiToken);
    assert.equal(stored.local, 0);
    assert.equal(stored.cookie, "");
    const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: `#${job.id}` }) });
    await row.waitFor();
    assert.match(await row.innerText(), /completed/);
  });

  it("updates the list live and filters by state, queue and repository", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const failing = await cluster.api.submit({ queue: "default", isolation: "none", steps: [{ key: "boom", commands: ["echo about to fail; exit 3"] }] });
    // Submitted after the page loaded: it appears without a reload.
    await page.getByRole("link", { name: `#${failing.id}` }).waitFor({ timeout: 15_000 });
    await waitForJob(cluster.api, failing.id);
    const onRepo = await cluster.api.submit({ repository: "acme/web", isolation: "none", steps: [{ commands: ["cat src/greeting.txt"] }] });
    await waitForJob(cluster.api, onRepo.id);

    await page.getByLabel("State").selectOption("failed");
    await page.waitForURL(/state=failed/);
    await page.getByRole("link", { name: `#${failing.id}` }).waitFor();
    await until(() => onlyRow(/failed/), "only the failed job listed");
    await browser!.screenshot(page, "02-jobs-filtered-failed");

    await page.getByRole("button", { name: "Clear filters" }).click();
    await page.getByLabel("Repository").selectOption("acme/web");
    await page.waitForURL(/repository=acme%2Fweb/);
    await until(() => onlyRow(new RegExp(`#${onRepo.id}\\b`)), "only the repository's job listed");
    const commitCell = await page.locator("table.jobs tbody tr td code").innerText();
    assert.equal(commitCell, (onRepo.commit ?? "").slice(0, 10));

    await page.getByRole("button", { name: "Clear filters" }).click();
    await page.getByLabel("Queue").selectOption("default");
    await page.waitForURL(/queue=default/);
    await page.getByRole("link", { name: `#${onRepo.id}` }).waitFor();
    await page.getByRole("button", { name: "Clear filters" }).click();
    await until(async () => (await rows().count()) >= 3, "all jobs listed again");
    await browser!.screenshot(page, "03-jobs");
  });

  it("tails a running step's log live, with ANSI colours", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const job = await cluster.api.submit({
      isolation: "none",
      steps: [
        { key: "setup", commands: ["echo preparing"] },
        {
          key: "ticks",
          commands: [
            "printf '\\033[1;31mred bold\\033[0m then \\033[32mgreen\\033[0m and <b>not html</b>\\n'",
            "for i in $(seq 1 25); do echo \"tick $i\"; sleep 0.2; done",
          ],
        },
      ],
    });
    await openJob(job.id);
    await page.locator(".log-line", { hasText: "tick 2" }).first().waitFor({ timeout: 20_000 });
    const during = await cluster.api.getJob(job.id);
    assert.equal(during.state, "processing", "the line showed while the step was still running");
    assert.ok(!(await page.locator(".log-line", { hasText: "tick 25" }).count()), "later lines were not there yet");
    await page.locator(".log-line", { hasText: /^\s*\d+\s*tick 25$/ }).waitFor({ timeout: 20_000 });

    const red = page.locator(".log-text span.ansi-fg-1.ansi-bold", { hasText: "red bold" });
    assert.equal(await red.count(), 1);
    assert.equal(await page.locator(".log-text span.ansi-fg-2", { hasText: "green" }).count(), 1);
    assert.equal(await page.locator(".log b").count(), 0, "log text is never parsed as HTML");
    assert.equal(await page.locator(".log-text", { hasText: "<b>not html</b>" }).count(), 1);
    await badge("completed").waitFor();
    const ticks = page.getByRole("row").filter({ has: page.getByRole("button", { name: "ticks" }) });
    assert.match(await ticks.innerText(), /completed\s+0/);
    await browser!.screenshot(page, "04-job-live-log");

    await page.getByRole("button", { name: "setup" }).click();
    await page.locator(".log-line", { hasText: "preparing" }).waitFor();
  });

  it("keeps a 100k-line log virtualized and scrolls to its end", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const job = await cluster.api.submit({ isolation: "none", steps: [{ key: "big", commands: ["seq 1 100000 | sed 's/^/line /'"] }] });
    await waitForJob(cluster.api, job.id);
    await openJob(job.id);
    await page.getByText("100,000 lines").waitFor({ timeout: 30_000 });
    const rendered = await page.locator(".log-line").count();
    assert.ok(rendered > 0 && rendered < 400, `only the lines in view are in the DOM (${rendered})`);
    await page.getByRole("region", { name: "Log of big" }).focus();
    await page.keyboard.press("End");
    await page.locator(".log-line", { hasText: /^\s*100000\s*line 100000$/ }).waitFor();
    assert.ok((await page.locator(".log-line").count()) < 400);
    await browser!.screenshot(page, "05-job-100k-lines");
  });

  it("shows the diff with a file list and coloured hunks, and downloads artifacts", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const job = await cluster.api.submit({
      repository: "acme/web",
      isolation: "none",
      steps: [{ key: "rewrite", commands: ["sed -i s/foo/bar/ src/greeting.txt", "echo new > NEW.md", "echo '{\"ok\":true}' > report.json"] }],
      outputs: { diff: true, paths: ["report.json"] },
    });
    await waitForJob(cluster.api, job.id);
    await openJob(job.id);
    const files = page.getByRole("navigation", { name: "Changed files" });
    await files.waitFor();
    // Output files are untracked changes too, so report.json is in the diff.
    assert.match(await files.innerText(), /3 files changed, \+3 −1/);
    assert.match(await files.innerText(), /src\/greeting\.txt/);
    assert.match(await files.innerText(), /NEW\.md/);
    assert.equal(await page.locator("tr.diff-add", { hasText: "hello bar" }).count(), 1);
    assert.equal(await page.locator("tr.diff-del", { hasText: "hello foo" }).count(), 1);
    assert.equal(await page.locator("span.diff-status-added", { hasText: "added" }).count(), 2, "NEW.md and report.json are new");

    const artifacts = page.getByRole("region", { name: "Artifacts" });
    const download = page.waitForEvent("download");
    await artifacts.getByRole("button", { name: "Download report.json" }).click();
    const saved = await (await download).path();
    const { readFile } = await import("node:fs/promises");
    assert.equal((await readFile(saved, "utf8")).trim(), '{"ok":true}');
    await browser!.screenshot(page, "06-job-diff");
  });

  it("cancels a running job and shows its state change", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const job = await cluster.api.submit({ isolation: "none", steps: [{ key: "wait", commands: ["echo waiting; sleep 60"] }] });
    await openJob(job.id);
    await page.locator(".log-line", { hasText: "waiting" }).waitFor({ timeout: 20_000 });
    await badge("processing").waitFor();
    await page.getByRole("button", { name: "Cancel job" }).click();
    const dialog = page.getByRole("dialog", { name: `Cancel job ${job.id}?` });
    await dialog.waitFor();
    await browser!.screenshot(page, "07-cancel-dialog");
    await dialog.getByRole("button", { name: "Yes, cancel it" }).click();
    await badge("canceled").waitFor({ timeout: 20_000 });
    assert.equal((await waitForJob(cluster.api, job.id)).state, "canceled");
    assert.equal(await page.getByRole("button", { name: "Cancel job" }).count(), 0);
    await browser!.screenshot(page, "08-job-canceled");
  });

  it("runs a job again, asking for its secrets instead of sending masked values", async (t) => {
    if (skipReason) return t.skip(skipReason);
    // The step checks the secret by its hash, so the value appears nowhere in the spec.
    const hash = createHash("sha256").update("s3cret-value").digest("hex");
    const job = await cluster.api.submit({
      isolation: "none",
      secrets: { API_KEY: "s3cret-value" },
      steps: [{ key: "check", commands: [`printf %s "$API_KEY" | sha256sum | grep -q ${hash} && echo key ok`] }],
    });
    await waitForJob(cluster.api, job.id);
    await openJob(job.id);
    assert.equal(await page.getByText("s3cret-value").count(), 0, "the secret is never on the page");
    await page.getByText("Job spec").click();
    const spec = await page.locator(".spec pre").innerText();
    assert.match(spec, /API_KEY \(value hidden\)/);
    assert.doesNotMatch(spec, /s3cret/);
    await browser!.screenshot(page, "09-job-spec");
    await page.getByRole("button", { name: "Run again" }).click();
    const dialog = page.getByRole("dialog", { name: `Run job ${job.id} again` });
    await dialog.getByLabel("Secret API_KEY").waitFor();
    await dialog.getByRole("button", { name: "Submit new job" }).click();
    // The browser's own validation stops an empty required field; nothing is submitted.
    assert.equal((await cluster.api.listJobs({ limit: 1 }))[0]?.id, job.id);
    await dialog.getByLabel("Secret API_KEY").fill("s3cret-value");
    await browser!.screenshot(page, "10-run-again-dialog");
    await dialog.getByRole("button", { name: "Submit new job" }).click();
    await page.waitForURL((url) => /\/jobs\/(\d+)$/.test(url.pathname) && !url.pathname.endsWith(`/${job.id}`));
    const newId = Number(new URL(page.url()).pathname.split("/").pop());
    const rerun = await waitForJob(cluster.api, newId);
    assert.equal(rerun.state, "completed", "the re-entered secret reached the step");
    await page.locator(".log-line", { hasText: "key ok" }).waitFor();
  });

  it("lists the executor with its runtime, isolation and heartbeat", async (t) => {
    if (skipReason) return t.skip(skipReason);
    await page.getByRole("link", { name: "Executors" }).click();
    await page.getByRole("heading", { level: 1, name: "Executors" }).waitFor();
    const row = page.getByRole("row").filter({ hasText: "test-executor-1" });
    await row.waitFor();
    const text = await row.innerText();
    assert.match(text, /alive/);
    assert.match(text, /shell/);
    assert.match(text, /none/);
    assert.match(text, /default/);
    assert.match(text, new RegExp(`0\\.1\\.0\\S* protocol ${PROTOCOL_VERSION}\\b`), "the executor's version and protocol are shown");
    await browser!.screenshot(page, "11-executors");
  });

  it("marks an executor that stopped heartbeating as stale", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const gone = cluster.startExecutor(["--name", "short-lived"]);
    const row = page.getByRole("row").filter({ hasText: "short-lived" });
    await row.waitFor({ timeout: 20_000 });
    await until(async () => /alive/.test(await row.innerText()), "short-lived listed as alive");
    await gone.stop(5000);
    // The cluster's lease window is 3 s; the page refreshes every 5 s.
    await until(async () => /stale/.test(await row.innerText()), "short-lived marked stale", 20_000);
    assert.match(await page.getByRole("row").filter({ hasText: "test-executor-1" }).innerText(), /alive/);
    await browser!.screenshot(page, "11-executors-stale");
  });

  it("draws the queue charts from the history endpoint", async (t) => {
    if (skipReason) return t.skip(skipReason);
    await page.getByRole("link", { name: "Queues" }).click();
    await page.getByRole("heading", { level: 1, name: "Queues" }).waitFor();
    const card = page.getByRole("region", { name: "Queue default" });
    await card.waitFor();
    assert.equal(await card.locator("svg.chart").count(), 4);
    const throughput = card.locator("figure", { hasText: "Throughput" }).getByRole("img");
    assert.match((await throughput.getAttribute("aria-label")) ?? "", /\d+ jobs of default ended/);
    assert.ok((await card.locator("rect.bar-completed").count()) > 0, "completed jobs show as bars");
    assert.ok((await card.locator("path.chart-line").count()) >= 3);
    await browser!.screenshot(page, "12-queues");
  });

  it("works from the keyboard", async (t) => {
    if (skipReason) return t.skip(skipReason);
    await page.goto(`${cluster.coordinator.url}/jobs`);
    await page.getByRole("heading", { level: 1, name: "Jobs" }).waitFor();
    await page.keyboard.press("Tab");
    const focused = (): Promise<string> => inPage("document.activeElement?.textContent ?? ''");
    assert.equal(await focused(), "Skip to content");
    for (let tries = 0; tries < 10; tries += 1) {
      await page.keyboard.press("Tab");
      if ((await focused()) === "Executors") break;
    }
    assert.equal(await focused(), "Executors");
    const outline = await inPage<string>("getComputedStyle(document.activeElement).outlineStyle");
    assert.equal(outline, "solid", "focus is visible");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { level: 1, name: "Executors" }).waitFor();
    // The focus moves in an effect after the page renders: wait for it (it never moves if the UI forgets to).
    await until(async () => (await inPage<string>("document.activeElement.tagName")) === "H1", "focus moves to the new page's heading", 5000);
  });

  it("resumes a live log after the coordinator restarts, showing no line twice", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const job = await cluster.api.submit({ isolation: "none", steps: [{ key: "slow", commands: ["for i in $(seq 1 25); do echo \"n $i\"; sleep 0.3; done"] }] });
    await openJob(job.id);
    await page.locator(".log-text", { hasText: /^n 3$/ }).waitFor({ timeout: 20_000 });
    await cluster.restartCoordinator();
    await page.locator(".log-text", { hasText: /^n 25$/ }).waitFor({ timeout: 30_000 });
    await badge("completed").waitFor({ timeout: 30_000 });
    const texts = await page.locator(".log-text").allInnerTexts();
    assert.deepEqual(texts, Array.from({ length: 25 }, (_, index) => `n ${index + 1}`));
  });

  it("shows what a job reached through the egress gateway, refusals named", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const why = egressUnavailable ?? (await bwrapUnavailable());
    if (why) return t.skip(why);
    cluster.startExecutor(["--runtime", "bwrap", "--queues", "net", "--images", TEST_IMAGES, "--name", "web-ui-bwrap"]);
    // Refused by the gateway before any packet is sent: loopback and a private address.
    const job = await cluster.api.submit({
      queue: "net",
      steps: [{ key: "probe", image: "airlock-test/net", commands: ['curl -fsS --noproxy "" -x "$http_proxy" http://127.0.0.1:9/ || true', 'curl -fsS -x "$http_proxy" http://10.255.0.1/ || true'] }],
    });
    const done = await waitForJob(cluster.api, job.id, undefined, 120_000);
    assert.equal(done.state, "completed", done.failureMessage ?? "");
    await openJob(job.id);
    const section = page.getByRole("region", { name: "Network" });
    await section.getByTestId("egress-totals").waitFor();
    assert.match(await section.getByTestId("egress-totals").innerText(), /2 connection\(s\): 0 allowed, 2 refused/);
    const text = await section.innerText();
    assert.match(text, /127\.0\.0\.1:9/);
    assert.match(text, /loopback/);
    assert.match(text, /10\.255\.0\.1:80[\s\S]*private-use/);
    await browser!.screenshot(page, "14-job-egress");
  });

  it("sent no request off loopback and broke no CSP rule", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const offLoopback = browser!.requests.filter((url) => !/^(https?:\/\/(127\.0\.0\.1|localhost)(:\d+)?\/|data:|blob:)/.test(url));
    assert.deepEqual(offLoopback, []);
    assert.ok(browser!.requests.length > 10);
    // Expected: the refused sign-in (401), and reconnect attempts while the coordinator restarted.
    const problems = browser!.problems.filter((problem) => !/status of 401|net::ERR_CONNECTION_REFUSED/.test(problem));
    assert.deepEqual(problems, [], "no other console errors: no CSP or Trusted Types violations, no script errors");
    const response = await page.goto(`${cluster.coordinator.url}/queues`);
    const csp = response?.headers()["content-security-policy"] ?? "";
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    for (const job of await cluster.api.listJobs({ limit: 50 })) assert.ok(isTerminal(job.state), `job ${job.id} ended`);
  });
});
