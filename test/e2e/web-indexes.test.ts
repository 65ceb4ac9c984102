/**
 * The Indexes page in headless Chromium against a real coordinator and executor (bwrap, the
 * airlock-test/node-indexer image):
 * two repositories indexed by real jobs (a small indexer command writes a SCIP file the
 * coordinator parses and counts; one crashes), listed per repository with their counts, state,
 * the repository's auto-index policy, and a link to each job that opens it. No request leaves
 * loopback; no console errors. A screenshot goes to test-artifacts/web/.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Page } from "playwright-core";
import { isLoopback, launchBrowser, type Browser } from "../helpers/browser.ts";
import { bwrapUnavailable, TEST_IMAGES } from "../helpers/bwrap.ts";
import { makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";
import { bytesField, text, varintField } from "../helpers/protobuf.ts";

// A SCIP index by the protobuf wire rules: metadata, two documents, one external symbol.
const field = bytesField;
const occurrence = (symbol: string, roles: number): number[] => [...field(1, [0, 4, 9]), ...text(2, symbol), ...(roles ? varintField(3, roles) : [])];
const SCIP = Buffer.from([
  ...field(1, [...field(2, [...text(1, "tiny-indexer"), ...text(2, "1.0")]), ...text(3, "file:///work")]),
  ...field(2, [...text(1, "src/a.ts"), ...field(2, occurrence("pkg a/f().", 1)), ...field(3, text(1, "pkg a/f()."))]),
  ...field(2, [...text(1, "src/b.ts"), ...field(2, occurrence("pkg a/f().", 0)), ...field(2, occurrence("pkg b/g().", 1)), ...field(3, text(1, "pkg b/g()."))]),
  ...field(3, text(1, "npm lib x.")),
]).toString("hex");

const config = (index: string): string => `roots:\n  - path: .\n    install: []\n    index: ${JSON.stringify(index)}\n    indexer: { name: tiny-indexer, version: "1.0" }\n`;

let cluster: Cluster;
let browser: Browser | undefined;
let skipReason: string | undefined;
let page: Page;

describe("web UI: indexes per repository", { concurrency: false, timeout: 240_000 }, () => {
  before(async () => {
    const missing = existsSync(join(TEST_IMAGES, "node-indexer", "oci", "index.json")) ? await bwrapUnavailable() : `the test image airlock-test/node-indexer is missing in ${TEST_IMAGES}`;
    if (missing) {
      skipReason = missing;
      console.log(`# skipping the indexes page test: ${missing}`);
      return;
    }
    const launched = await launchBrowser();
    if (typeof launched === "string") {
      skipReason = launched;
      console.log(`# skipping browser tests: ${launched}`);
      return;
    }
    browser = launched;
    cluster = await startCluster({ runtime: "bwrap", executorArgs: ["--images", TEST_IMAGES] });
    await makeRepo(join(cluster.dir, "web"), { "airlock-index.yaml": config(`node -e "require('fs').writeFileSync('index.scip', Buffer.from('${SCIP}', 'hex'))"`), "src/a.ts": "", "src/b.ts": "" });
    await makeRepo(join(cluster.dir, "api"), { "airlock-index.yaml": config("echo 'indexer: out of memory' >&2; exit 3") });
    await cluster.api.addRepository("acme/web", join(cluster.dir, "web"));
    await cluster.api.addRepository("acme/api", join(cluster.dir, "api"));
    page = await browser.newPage();
  });

  after(async () => {
    await browser?.close();
    await cluster?.close();
  });

  it("lists each repository's indexes with their counts and state, and links each to its job", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const web = await cluster.api.setIndexPolicy({ repository: "acme/web", autoIndex: true });
    const webIndex = web.autoIndex?.plan?.entries[0]?.index;
    assert.ok(webIndex, "auto-index queued acme/web's HEAD");
    const apiIndex = (await cluster.api.index({ repository: "acme/api" })).entries[0]?.index;
    assert.ok(apiIndex);
    for (const id of [webIndex.jobId, apiIndex.jobId]) await waitForJob(cluster.api, id, undefined, 60_000);
    const done = await cluster.api.getIndex(webIndex.id);
    assert.deepEqual([done.state, done.documents, done.symbols, done.occurrences], ["completed", 2, 3, 3]);
    assert.equal((await cluster.api.getIndex(apiIndex.id)).state, "failed");

    await page.goto(`${cluster.coordinator.url}/`);
    await page.getByLabel("API token").fill(cluster.coordinator.apiToken);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Indexes" }).click();
    await page.getByRole("heading", { level: 1, name: "Indexes" }).waitFor();

    const webSection = page.getByRole("region", { name: /acme\/web/ });
    await webSection.getByRole("heading", { name: /acme\/web\s+auto-index on/ }).waitFor();
    const row = webSection.getByRole("row", { name: new RegExp(`#${webIndex.id}\\b`) });
    const cells = await row.getByRole("cell").allInnerTexts();
    assert.deepEqual(cells.map((cell) => cell.trim()).slice(0, 8), [done.commit.slice(0, 12), ".", "tiny-indexer 1.0", "completed", "2", "3", "3", `Job #${webIndex.jobId}`]);

    const apiSection = page.getByRole("region", { name: /acme\/api/ });
    await apiSection.getByRole("heading", { name: /acme\/api\s+auto-index off/ }).waitFor();
    const failed = await apiSection.getByRole("row", { name: new RegExp(`#${apiIndex.id}\\b`) }).getByRole("cell").allInnerTexts();
    assert.match(failed[3] ?? "", new RegExp(`failed[\\s\\S]*job ${apiIndex.jobId} failed`));
    assert.deepEqual(failed.slice(4, 7).map((cell) => cell.trim()), ["–", "–", "–"], "a failed index has no counts");
    await browser!.screenshot(page, "indexes");

    await row.getByRole("link", { name: `Job #${webIndex.jobId}` }).click();
    await page.getByRole("heading", { level: 1, name: `Job ${webIndex.jobId}` }).waitFor();
    assert.equal(new URL(page.url()).pathname, `/jobs/${webIndex.jobId}`);

    assert.deepEqual(browser!.requests.filter((url) => !isLoopback(url)), [], "no request left loopback");
    assert.deepEqual(browser!.problems, [], "no console errors");
  });
});
