// The browser suite's tools: Debian's Chromium driven by playwright-core,
// axe-core run inside pages, screenshots kept as artifacts.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync, mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import os from 'node:os';
import { startSuite, api, root, redisDb } from './kreide.mjs';

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

// The built portal behind a real gateway (startSuite with `name` and
// `env`, on Redis database `redis`), with the portal's public client
// registered as make run's seed does it and named in /portal-config.json.
// Resolves with {s, op, clientId}: the suite, an operator token, the id.
export async function startPortalSuite({ name, redis, env = {} }) {
  const portalDir = path.resolve(root, process.env.BUILD || 'build', 'portal');
  assert.ok(existsSync(path.join(portalDir, 'index.html')), `the portal is not built in ${portalDir}: run make`);
  const configFile = path.join(mkdtempSync(path.join(os.tmpdir(), `kreide-${name}-`)), 'portal-config.json');
  const s = await startSuite({
    name,
    env: { KREIDE_STATIC_DIR: portalDir, KREIDE_PORTAL_CONFIG: configFile, KREIDE_REDIS_URL: redisDb(redis), ...env },
  });
  const op = s.token({ roles: ['operator'] });
  const c = await api(`${s.url}/api/v1/oidc/clients`, {
    method: 'POST', token: op,
    body: {
      name: 'Kreide', type: 'PUBLIC', first_party: true,
      redirect_uris: [`${s.url}/auth/callback`], post_logout_redirect_uris: [`${s.url}/`],
      grant_types: ['authorization_code'], scopes: ['openid', 'profile', 'school'],
    },
  });
  assert.equal(c.status, 201, c.text);
  writeFileSync(configFile, JSON.stringify({ client_id: c.json.client_id }));
  return { s, op, clientId: c.json.client_id };
}

// Fails the test when axe-core finds a serious or critical violation.
export async function noSeriousViolations(page, where) {
  const v = await axeViolations(page);
  assert.deepEqual(v, [], `${where}: axe-core found ${JSON.stringify(v, null, 1)}`);
}
