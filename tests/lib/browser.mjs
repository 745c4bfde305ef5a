// The browser suite's tools: Debian's Chromium driven by playwright-core,
// axe-core run inside pages, screenshots kept as artifacts.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import os from 'node:os';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const shotDir = path.join(process.env.KREIDE_TEST_OUT || path.join(os.tmpdir(), 'kreide-test-out'), 'browser');
export const viewports = [
  { name: 'phone', width: 375, height: 667 },
  { name: 'desktop', width: 1280, height: 800 },
];

export async function launch() {
  return chromium.launch({
    executablePath: process.env.KREIDE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--disable-quic', '--no-first-run'],
  });
}

// A fresh context (its own storage, like another device) and page that
// records what a test must never see: requests to other hosts, Content
// Security Policy refusals and uncaught errors.
export async function openPage(browser, baseUrl, { viewport = viewports[0], locale = 'de-DE' } = {}) {
  const context = await browser.newContext({
    viewport: { width: viewport.width, height: viewport.height },
    locale,
    serviceWorkers: 'allow',
  });
  const page = await context.newPage();
  const origin = new URL(baseUrl).origin;
  page.problems = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.protocol !== 'blob:' && u.origin !== origin) page.problems.push(`request to ${r.url()}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) page.problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
  return { context, page };
}

// axe-core's serious and critical violations on the page as it is now.
// Evaluated through the DevTools protocol, which the page's CSP does not
// govern, so the policy under test stays as strict as in production.
export async function axeViolations(page) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export async function screenshot(page, name) {
  mkdirSync(shotDir, { recursive: true });
  const file = path.join(shotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
