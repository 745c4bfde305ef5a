// The portal in Debian's Chromium: it loads on a small phone and on a
// desktop in German and English, sets a first password with a code issued
// through the API against the real identity service, installs as an app
// without caching anyone's data, asks nothing of other hosts, breaks no
// rule of its Content Security Policy, and axe-core finds no serious or
// critical accessibility violation. Screenshots: $KREIDE_TEST_OUT/browser/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api } from '../lib/kreide.mjs';
import { launch, openPage, screenshot, viewports, startPortalSuite, noSeriousViolations } from '../lib/browser.mjs';

let s;
let browser;
let op;
let clientId;
const ids = {};

before(async () => {
  ({ s, op, clientId } = await startPortalSuite({ name: 'portal', redis: 11 }));

  const school = await post('/api/v1/schools', { name: 'Grundschule am Hafen', kind: 'SCHOOL', kennung: 'PORTAL-1' });
  assert.equal(school.status, 201, school.text);
  ids.school = school.json.id;
  const u = await post('/api/v1/users', {
    username: 'ida.hansen', given_name: 'Ida', family_name: 'Hansen',
    contexts: [{ school_id: ids.school, role: 'PUPIL' }],
  });
  assert.equal(u.status, 201, u.text);
  ids.ida = u.json.id;
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (s) await s.stop();
});

function post(p, body, token = op) {
  return api(`${s.url}${p}`, { method: 'POST', token, body });
}

const heading = (page) => page.locator('h1').first().textContent();

for (const vp of viewports) {
  for (const [locale, lang, title, button] of [
    ['de-DE', 'de', 'Willkommen bei Kreide', 'Anmelden'],
    ['en-GB', 'en', 'Welcome to Kreide', 'Sign in'],
  ]) {
    test(`the sign-in start in ${lang} at ${vp.width}×${vp.height}`, async () => {
      const { context, page } = await openPage(browser, s.url, { viewport: vp, locale });
      try {
        const res = await page.goto(`${s.url}/`);
        assert.equal(res.status(), 200);
        assert.match(res.headers()['content-security-policy'], /script-src 'self'/);
        await page.getByRole('heading', { level: 1, name: title }).waitFor();
        assert.equal(await page.locator('html').getAttribute('lang'), lang);
        assert.ok(await page.getByRole('button', { name: button, exact: true }).isVisible());
        // Nothing wider than the screen: no sideways scrolling on a phone.
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `the page is ${overflow} px wider than the viewport`);
        await screenshot(page, `start-${lang}-${vp.width}x${vp.height}`);
        await noSeriousViolations(page, `start ${lang} ${vp.name}`);
        assert.deepEqual(page.problems, []);
      } finally {
        await context.close();
      }
    });
  }
}

test('the language can be switched and stays chosen on this device', async () => {
  const { context, page } = await openPage(browser, s.url, { locale: 'de-DE' });
  try {
    await page.goto(`${s.url}/forgot`);
    await page.getByRole('heading', { level: 1, name: 'Passwort vergessen?' }).waitFor();
    await page.getByLabel('Sprache').selectOption('en');
    await page.getByRole('heading', { level: 1, name: 'Forgot your password?' }).waitFor();
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    await page.reload();
    await page.getByRole('heading', { level: 1, name: 'Forgot your password?' }).waitFor();
    // Whom to ask, since there is no e-mail.
    assert.match(await page.locator('main').textContent(), /class teacher/);
    await screenshot(page, 'forgot-en-375x667');
    await noSeriousViolations(page, 'forgot');
    assert.deepEqual(page.problems, []);
  } finally {
    await context.close();
  }
});

test('the sign-in button starts an authorization code request with PKCE for the registered client', async () => {
  const { context, page } = await openPage(browser, s.url, { locale: 'en-GB' });
  try {
    await page.goto(`${s.url}/`);
    const asked = page.waitForRequest((r) => new URL(r.url()).pathname === '/oidc/authorize');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    const q = new URL((await asked).url()).searchParams;
    assert.equal(q.get('response_type'), 'code');
    assert.equal(q.get('client_id'), clientId);
    assert.equal(q.get('redirect_uri'), `${s.url}/auth/callback`);
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.match(q.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
    assert.match(q.get('scope'), /\bopenid\b/);
    assert.match(q.get('scope'), /\bschool\b/);
    assert.ok(q.get('state').length >= 16 && q.get('nonce').length >= 16);
    assert.equal(q.get('ui_locales'), 'en');
    // The verifier waits in this tab's session storage (same origin, so
    // still there on the provider's page), nowhere else.
    await page.waitForURL((u) => u.pathname === '/oidc/authorize');
    await page.waitForLoadState();
    const stored = await page.evaluate(() => ({ local: JSON.stringify(localStorage), pending: sessionStorage.getItem('kreide.pending') }));
    assert.ok(stored.pending && JSON.parse(stored.pending).state === q.get('state'));
    assert.ok(!stored.local.includes(JSON.parse(stored.pending).verifier));
  } finally {
    await context.close();
  }
});

test('a stale or forged callback is refused and no code is sent anywhere', async () => {
  const { context, page } = await openPage(browser, s.url, { locale: 'en-GB' });
  try {
    const tokenCalls = [];
    page.on('request', (r) => { if (new URL(r.url()).pathname === '/oidc/token') tokenCalls.push(r.url()); });
    await page.goto(`${s.url}/auth/callback?code=abc&state=forged&iss=${encodeURIComponent(s.url)}`);
    await page.getByText('This sign-in is out of date').waitFor();
    assert.equal(new URL(page.url()).search, '', 'the code is taken out of the address bar');
    assert.deepEqual(tokenCalls, []);
    await noSeriousViolations(page, 'callback error');
  } finally {
    await context.close();
  }
});

test('first login: a pupil sets a password with the code issued through the API', async () => {
  const issued = await post(`/api/v1/users/${ids.ida}/codes`, { school_id: ids.school, purpose: 'ENROLLMENT' });
  assert.equal(issued.status, 201, issued.text);
  const { context, page } = await openPage(browser, s.url, { locale: 'de-DE' });
  try {
    await page.goto(`${s.url}/`);
    await page.getByRole('link', { name: 'Mit Code ein Passwort wählen' }).click();
    await page.getByRole('heading', { level: 1, name: 'Passwort wählen' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/enroll');
    // The password policy is explained before anyone types.
    assert.match(await page.locator('.rules').textContent(), /mindestens 8 Zeichen/);

    // Two different passwords: caught on the page, nothing sent.
    await page.getByLabel('Benutzername').fill('ida.hansen');
    await page.getByLabel('Code', { exact: true }).fill(issued.json.code.toLowerCase());
    await page.getByLabel('Neues Passwort').fill('mein pferd heisst blitz');
    await page.getByLabel('Passwort wiederholen').fill('mein pferd heisst donner');
    await page.getByRole('button', { name: 'Passwort speichern' }).click();
    await page.getByText('Die beiden Passwörter sind nicht gleich.').waitFor();
    assert.equal(await page.getByLabel('Passwort wiederholen').getAttribute('aria-invalid'), 'true');

    // A wrong code: the identity service's refusal, in German, at the field.
    await page.getByLabel('Code', { exact: true }).fill('AAAA-AAAA-AAAA');
    await page.getByLabel('Passwort wiederholen').fill('mein pferd heisst blitz');
    await page.getByRole('button', { name: 'Passwort speichern' }).click();
    await page.getByText('Benutzername oder Code stimmen nicht.').waitFor();
    assert.equal(await page.getByLabel('Code', { exact: true }).getAttribute('aria-invalid'), 'true');
    await screenshot(page, 'enroll-error-de-375x667');
    await noSeriousViolations(page, 'enroll with errors');

    // A password the policy refuses.
    await page.getByLabel('Code', { exact: true }).fill(issued.json.code);
    await page.getByLabel('Neues Passwort').fill('passwort1');
    await page.getByLabel('Passwort wiederholen').fill('passwort1');
    await page.getByRole('button', { name: 'Passwort speichern' }).click();
    await page.getByText('Dieses Passwort ist zu bekannt.').waitFor();

    // Right code, good password.
    await page.getByLabel('Neues Passwort').fill('mein pferd heisst blitz');
    await page.getByLabel('Passwort wiederholen').fill('mein pferd heisst blitz');
    await page.getByRole('button', { name: 'Passwort speichern' }).click();
    await page.getByText('Geschafft! Dein Passwort ist gespeichert.').waitFor();
    await screenshot(page, 'enroll-done-de-375x667');
    await noSeriousViolations(page, 'enroll done');
    assert.deepEqual(page.problems, []);
  } finally {
    await context.close();
  }
  // The identity service now accepts that password, and the code is spent.
  const auth = s.rpc('kreide.identity.Identity/Authenticate',
    JSON.stringify({ username: 'ida.hansen', password: 'mein pferd heisst blitz', client_address: '203.0.113.9' }));
  assert.equal(auth.status, 'OK', JSON.stringify(auth));
  assert.equal(auth.body.user_id, ids.ida);
  const again = await api(`${s.url}/api/v1/enroll`, {
    method: 'POST', body: { username: 'ida.hansen', code: issued.json.code, password: 'ein ganz anderer satz' },
  });
  assert.equal(again.status, 400);
  assert.equal(again.json.error.code, 'identity.code_used');
});

test('installable: manifest, icons and a service worker that keeps only the app shell', async () => {
  const m = await api(`${s.url}/manifest.webmanifest`);
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type'), /^application\/manifest\+json/);
  assert.equal(m.json.display, 'standalone');
  assert.equal(m.json.start_url, '/');
  for (const size of [192, 512]) {
    const icon = m.json.icons.find((i) => i.sizes === `${size}x${size}` && i.type === 'image/png' && !i.purpose);
    assert.ok(icon, `a ${size} px icon`);
    const r = await fetch(`${s.url}${icon.src}`);
    assert.equal(r.status, 200);
    const png = Buffer.from(await r.arrayBuffer());
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assert.equal(png.readUInt32BE(16), size);
    assert.equal(png.readUInt32BE(20), size);
  }
  assert.ok(m.json.icons.some((i) => i.purpose === 'maskable'));

  const { context, page } = await openPage(browser, s.url, { viewport: viewports[1], locale: 'en-GB' });
  try {
    await page.goto(`${s.url}/`);
    await page.getByRole('heading', { level: 1, name: 'Welcome to Kreide' }).waitFor();
    const cached = await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
      const keys = await caches.keys();
      const urls = [];
      for (const k of keys) for (const r of await (await caches.open(k)).keys()) urls.push(new URL(r.url).pathname);
      return { keys, urls };
    });
    assert.equal(cached.keys.length, 1);
    assert.ok(cached.urls.includes('/'), JSON.stringify(cached.urls));
    assert.ok(cached.urls.some((u) => u.startsWith('/assets/') && u.endsWith('.js')));
    // Visiting pages that call the API adds nothing to the cache.
    await page.goto(`${s.url}/enroll`);
    await page.getByRole('heading', { level: 1, name: 'Choose a password' }).waitFor();
    await page.getByLabel('User name').fill('nobody.here');
    await page.getByLabel('Code', { exact: true }).fill('AAAA-AAAA-AAAA');
    await page.getByLabel('New password').fill('ein langer satz hier');
    await page.getByLabel('Repeat the password').fill('ein langer satz hier');
    await page.getByRole('button', { name: 'Save password' }).click();
    await page.getByText('The user name or the code is not right.').waitFor();
    const after = await page.evaluate(async () => {
      const urls = [];
      for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) urls.push(new URL(r.url).pathname);
      return urls;
    });
    assert.deepEqual(after.filter((u) => /^\/(api|oidc|\.well-known|portal-config)/.test(u)), []);
    assert.deepEqual(page.problems, []);
  } finally {
    await context.close();
  }
});
