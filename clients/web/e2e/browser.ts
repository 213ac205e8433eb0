// Debian's Chromium driven by playwright-core (no browser download), with a fresh profile, and
// axe-core injected into pages for the accessibility checks.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";

/** The browser binary: PERSYS_CHROMIUM, or Debian's. */
export const CHROMIUM = process.env.PERSYS_CHROMIUM || "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-quic",
  "--no-first-run",
  "--disable-component-update",
  "--disable-sync",
];

/** Launches Chromium with a fresh user-data-dir; `close` removes it. */
export async function launch(): Promise<{ context: BrowserContext; close: () => Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), "persys-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1280, height: 860 },
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** One axe finding. */
export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: number;
}

/**
 * Runs axe-core (WCAG 2.0/2.1 A and AA rules) on the page and returns its serious and critical
 * violations. axe is evaluated through the DevTools protocol, which the page's CSP does not
 * govern, so the check needs no CSP bypass.
 */
export async function axe(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(`${axeSource};0`);
  const result = await page.evaluate(async () => {
    // @ts-expect-error: axe is a global the evaluated source defined.
    const r = await window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    });
    return (r.violations as { id: string; impact: string | null; help: string; nodes: unknown[] }[]).map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.length,
    }));
  });
  return result.filter((v) => v.impact === "serious" || v.impact === "critical");
}
