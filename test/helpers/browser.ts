/**
 * Headless Chromium (Debian's /usr/bin/chromium) driven by playwright-core, with a fresh profile
 * in a temporary directory. Every request the pages make is recorded, and any request to a host
 * that is not loopback is aborted (and stays in the record, so tests can assert there was none).
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type ConsoleMessage, type Page } from "playwright-core";
import { ROOT } from "./cluster.ts";

export const CHROMIUM = process.env.AIRLOCK_CHROMIUM ?? "/usr/bin/chromium";
export const ARTIFACTS = join(ROOT, "test-artifacts", "web");

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface Browser {
  context: BrowserContext;
  /** Every URL requested by any page, in order. */
  requests: string[];
  /** Console messages of type error and uncaught page errors. */
  problems: string[];
  newPage(): Promise<Page>;
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

export function isLoopback(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  if (protocol === "data:" || protocol === "blob:" || protocol === "about:") return true;
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Starts Chromium, or returns the reason it cannot run here (for t.skip). */
export async function launchBrowser(): Promise<Browser | string> {
  if (!existsSync(CHROMIUM)) return `${CHROMIUM} is missing (scripts/setup.d/50-chromium.sh installs Debian's chromium)`;
  const profile = await mkdtemp(join(tmpdir(), "airlock-chromium-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1360, height: 900 },
      deviceScaleFactor: 1,
      timeout: 60_000,
    });
  } catch (error) {
    await rm(profile, { recursive: true, force: true });
    return `Chromium cannot start here: ${(error as Error).message.split("\n")[0]}`;
  }
  const requests: string[] = [];
  const problems: string[] = [];
  await context.route("**/*", async (route) => {
    const url = route.request().url();
    requests.push(url);
    if (isLoopback(url)) await route.continue();
    else await route.abort("blockedbyclient");
  });
  const watch = (page: Page): void => {
    page.on("console", (message: ConsoleMessage) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });
    page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
  };
  context.pages().forEach(watch);
  context.on("page", watch);
  await mkdir(ARTIFACTS, { recursive: true });
  return {
    context,
    requests,
    problems,
    async newPage() {
      const existing = context.pages().find((page) => page.url() === "about:blank");
      return existing ?? context.newPage();
    },
    async screenshot(page, name) {
      const path = join(ARTIFACTS, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}
