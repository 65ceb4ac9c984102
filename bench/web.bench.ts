/**
 * The web UI's figures (issue 7), in headless Chromium against a real coordinator and executor
 * (shell runtime) on this machine:
 * - live tail: a step prints 200 lines, each stamped with the wall clock when printed; the page
 *   records (MutationObserver, then the next animation frame: when it is painted) when each line
 *   shows in the log view. The CLI's `airlock jobs logs -f` follows the same job at the same time
 *   and is the bare figure.
 * - a 100k-line log: from navigation to the first log line on screen, to all lines loaded, the
 *   jump to the end, and frame times while scrolling through it. `airlock jobs logs` printing the
 *   same log is the bare figure for loading it.
 * Page-side code is text: it runs in the browser, and the server's TypeScript has no DOM types.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import type { Page } from "playwright-core";
import { launchBrowser } from "../test/helpers/browser.ts";
import { BIN, baseEnv, startCluster, waitForJob } from "../test/helpers/cluster.ts";
import { median, percentile, printTable } from "./lib.ts";

const LINES = Number(process.env.BENCH_WEB_LINES ?? 200);
const BIG = 100_000;
const LOADS = Number(process.env.BENCH_WEB_LOADS ?? 5);

/** Installed before the page's own scripts: notes when log lines and markers first show. */
const OBSERVER = `
  window.__seen = {};
  window.__marks = {};
  const watchFor = [];
  window.__watch = (name, pattern) => watchFor.push({ name, pattern: new RegExp(pattern) });
  new MutationObserver(() => {
    const texts = [...document.querySelectorAll(".log-text")].map((node) => node.textContent);
    const counter = document.querySelector(".log-toolbar span");
    const pending = [];
    for (const text of texts) {
      const match = /^L (\\d+) (\\d+)$/.exec(text);
      if (match && !(match[1] in window.__seen)) { window.__seen[match[1]] = -1; pending.push(match[1]); }
    }
    const marks = watchFor.filter((watch) => !(watch.name in window.__marks) && (texts.some((text) => watch.pattern.test(text)) || watch.pattern.test(counter ? counter.textContent : "")));
    for (const watch of marks) window.__marks[watch.name] = -1;
    if (pending.length === 0 && marks.length === 0) return;
    // Stamped at the next frame: what the observer saw is painted right after it.
    requestAnimationFrame(() => {
      const now = Date.now();
      for (const id of pending) window.__seen[id] = now;
      for (const watch of marks) window.__marks[watch.name] = now;
    });
  }).observe(document, { childList: true, subtree: true, characterData: true });
`;

function ms(values: number[], p: number): number {
  return percentile(values, p);
}

async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { level: 1, name: "Jobs" }).waitFor();
}

/** Follows a job with the CLI, stamping each "L n ts" line when it arrives. */
function cliFollow(url: string, token: string, id: number): { seen: Map<string, number>; done: Promise<void> } {
  const seen = new Map<string, number>();
  const child = spawn(BIN, ["jobs", "logs", "-f", String(id), "--url", url, "--token", token], { env: baseEnv, stdio: ["ignore", "pipe", "ignore"] });
  const lines = createInterface({ input: child.stdout });
  lines.on("line", (line) => {
    const match = /^L (\d+) (\d+)$/.exec(line);
    if (match?.[1] && !seen.has(match[1])) seen.set(match[1], Date.now());
  });
  return { seen, done: new Promise((resolve) => child.on("exit", () => resolve())) };
}

async function timeCliDump(url: string, token: string, id: number): Promise<number> {
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(BIN, ["jobs", "logs", String(id), "--url", url, "--token", token], { env: baseEnv, stdio: ["ignore", "ignore", "ignore"] });
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`jobs logs exited ${code}`))));
  });
  return performance.now() - started;
}

const browser = await launchBrowser();
if (typeof browser === "string") {
  console.log(`web benchmark skipped: ${browser}`);
  process.exit(0);
}
const cluster = await startCluster({ coordinatorArgs: ["--log-level", "warn"] });
try {
  const { url, apiToken } = cluster.coordinator;
  const page = await browser.newPage();
  await page.addInitScript({ content: OBSERVER });
  await signIn(page, url, apiToken);

  // Live tail. The step waits for the page and the CLI to be following before it prints.
  const tail = await cluster.api.submit({
    isolation: "none",
    steps: [{ key: "tail", commands: [`sleep 3; for i in $(seq 1 ${LINES}); do echo "L $i $(date +%s%3N)"; sleep 0.05; done`] }],
  });
  await page.goto(`${url}/jobs/${tail.id}`);
  const cli = cliFollow(url, apiToken, tail.id);
  const printed = new Map<string, number>();
  await waitForJob(cluster.api, tail.id, undefined, 120_000);
  await cli.done;
  const log = (await cluster.api.readLog(tail.id, "tail")).toString();
  for (const match of log.matchAll(/^L (\d+) (\d+)$/gm)) printed.set(match[1] ?? "", Number(match[2]));
  await page.locator(".log-text", { hasText: new RegExp(`^L ${LINES} `) }).waitFor();
  const seen = await page.evaluate<Record<string, number>>("window.__seen");
  const webLatency = [...printed].map(([id, at]) => (seen[id] ?? Number.NaN) - at).filter(Number.isFinite);
  const cliLatency = [...printed].map(([id, at]) => (cli.seen.get(id) ?? Number.NaN) - at).filter(Number.isFinite);
  if (webLatency.length !== LINES || cliLatency.length !== LINES) {
    throw new Error(`saw ${webLatency.length} lines in the page and ${cliLatency.length} in the CLI of ${LINES}`);
  }

  // 100k lines, some coloured.
  const big = await cluster.api.submit({
    isolation: "none",
    steps: [{ key: "big", commands: [`seq 1 ${BIG} | awk '{ if ($1 % 10 == 0) printf "\\033[32mline %d ok\\033[0m\\n", $1; else printf "line %d\\n", $1 }'`] }],
  });
  await waitForJob(cluster.api, big.id, undefined, 120_000);
  const firstPaint: number[] = [];
  const loaded: number[] = [];
  const toEnd: number[] = [];
  const frames: number[] = [];
  for (let load = 0; load < LOADS; load += 1) {
    await page.goto(`${url}/jobs`);
    await page.getByRole("heading", { level: 1, name: "Jobs" }).waitFor();
    await page.evaluate(`window.__watch("first", "^line \\\\d+( ok)?$"); window.__watch("all", "^${BIG.toLocaleString("en-US")} lines$");`);
    // In-app navigation, as a person clicks through; the clock starts at the click.
    await page.evaluate(`window.__clicked = Date.now(); history.pushState(null, "", "/jobs/${big.id}"); dispatchEvent(new Event("airlock:navigate"));`);
    await page.getByText(`${BIG.toLocaleString("en-US")} lines`).waitFor({ timeout: 60_000 });
    await page.waitForTimeout(100);
    const marks = await page.evaluate<{ clicked: number; first: number; all: number }>("({ clicked: window.__clicked, first: window.__marks.first, all: window.__marks.all })");
    firstPaint.push(marks.first - marks.clicked);
    loaded.push(marks.all - marks.clicked);
    // From the top, jump to the end (as the End key or the Follow button do).
    await page.evaluate(`document.querySelector(".log").scrollTop = 0`);
    await page.locator(".log-text", { hasText: /^line 1$/ }).waitFor();
    await page.evaluate(`window.__watch("end${load}", "^line ${BIG}( ok)?$"); window.__jump = Date.now(); const log = document.querySelector(".log"); log.scrollTop = log.scrollHeight;`);
    await page.locator(".log-text", { hasText: new RegExp(`^line ${BIG}( ok)?$`) }).waitFor();
    await page.waitForTimeout(50);
    toEnd.push(await page.evaluate<number>(`window.__marks["end${load}"] - window.__jump`));
    // Scroll back to the top through the whole log, 4000 px a frame (a fast fling: every frame
    // shows new lines), timing each frame.
    const intervals = await page.evaluate<number[]>(`new Promise((resolve) => {
      const log = document.querySelector(".log");
      const times = [];
      let last = performance.now();
      const step = () => {
        const now = performance.now();
        times.push(now - last);
        last = now;
        if (log.scrollTop <= 0 || times.length > 600) return resolve(times.slice(1));
        log.scrollTop -= 4000;
        requestAnimationFrame(step);
      };
      requestAnimationFrame(step);
    })`);
    frames.push(...intervals);
  }
  const cliDump = [];
  for (let run = 0; run < LOADS; run += 1) cliDump.push(await timeCliDump(url, apiToken, big.id));

  console.log(`live tail: ${LINES} lines printed 50 ms apart by a step (shell runtime); 100k-line log: median of ${LOADS} loads`);
  console.log("");
  const ratio = (ours: number, bare: number) => `${(ours / bare).toFixed(2)}x`;
  printTable(
    ["metric", "web UI", "target", "CLI (bare)", "web / CLI"],
    [
      ["live tail p50 (ms)", ms(webLatency, 50), "<= 250", ms(cliLatency, 50), ratio(ms(webLatency, 50), ms(cliLatency, 50))],
      ["live tail p95 (ms)", ms(webLatency, 95), "-", ms(cliLatency, 95), ratio(ms(webLatency, 95), ms(cliLatency, 95))],
      ["live tail max (ms)", Math.max(...webLatency), "-", Math.max(...cliLatency), ratio(Math.max(...webLatency), Math.max(...cliLatency))],
      ["100k lines: first log line painted (ms)", median(firstPaint), "<= 1000 (UI goal)", "-", "-"],
      ["100k lines: all loaded (ms)", median(loaded), "<= 3000 (UI goal)", median(cliDump), ratio(median(loaded), median(cliDump))],
      ["100k lines: jump to the end (ms)", median(toEnd), "<= 100 (UI goal)", "-", "-"],
      ["100k lines: scroll frame p50 (ms)", ms(frames, 50), "<= 16.7 (60 fps)", "-", "-"],
      ["100k lines: scroll frame p95 (ms)", ms(frames, 95), "<= 33 (UI goal)", "-", "-"],
    ],
  );
  console.log("");
  console.log(`CLI (bare): \`airlock jobs logs -f\` following the same job at the same time; for the 100k log, \`airlock jobs logs\` printing it in full (process start included).`);
} finally {
  await browser.close();
  await cluster.close();
}
