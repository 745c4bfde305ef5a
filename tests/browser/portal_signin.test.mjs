// Signing in to the portal through the real provider in Debian's Chromium:
// the launcher shows the person's schools and groups; a teacher issues a
// reset code for a pupil of their class and it works; a reload renews the
// tokens silently; two siblings' accounts share one device without one
// ever seeing the other's data; signing out of one ends its session; a
// school admin issues an enrollment code. Screenshots in
// $KREIDE_TEST_OUT/browser/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api } from '../lib/kreide.mjs';
import { launch, openPage, screenshot, viewports, startPortalSuite, noSeriousViolations } from '../lib/browser.mjs';

const PASSWORDS = {
  'tom.lehrer': 'der hafen ist heute still',
  'ida.hansen': 'mein pferd heisst blitz',
  'ole.hansen': 'ole spielt gern fussball im regen',
  'anke.admin': 'verwaltung mit langem satz',
};
let s;
let browser;
let op;
const ids = {};

const post = (p, body, token = op) => api(`${s.url}${p}`, { method: 'POST', token, body });

async function person(username, given, family, role) {
  const u = await post('/api/v1/users', {
    username, given_name: given, family_name: family, contexts: [{ school_id: ids.school, role }],
  });
  assert.equal(u.status, 201, u.text);
  const code = await post(`/api/v1/users/${u.json.id}/codes`, { school_id: ids.school, purpose: 'ENROLLMENT' });
  assert.equal(code.status, 201, code.text);
  const e = await api(`${s.url}/api/v1/enroll`, {
    method: 'POST', body: { username, code: code.json.code, password: PASSWORDS[username] },
  });
  assert.equal(e.status, 200, e.text);
  return u.json.id;
}

before(async () => {
  ({ s, op } = await startPortalSuite({ name: 'portalsignin', redis: 12 }));

  const school = await post('/api/v1/schools', { name: 'Grundschule am Hafen', kind: 'SCHOOL', kennung: 'HAFEN-1' });
  assert.equal(school.status, 201, school.text);
  ids.school = school.json.id;
  ids.tom = await person('tom.lehrer', 'Tom', 'Lehmann', 'TEACHER');
  ids.ida = await person('ida.hansen', 'Ida', 'Hansen', 'PUPIL');
  ids.ole = await person('ole.hansen', 'Ole', 'Hansen', 'PUPIL');
  ids.anke = await person('anke.admin', 'Anke', 'Albers', 'SCHOOL_ADMIN');
  const cls = await post(`/api/v1/schools/${ids.school}/groups`, { kind: 'CLASS', name: '3a', school_year: '2026/27' });
  assert.equal(cls.status, 201, cls.text);
  ids.class3a = cls.json.id;
  const club = await post(`/api/v1/schools/${ids.school}/groups`, { kind: 'CLUB', name: 'Chor-AG', school_year: '2026/27' });
  assert.equal(club.status, 201, club.text);
  for (const [g, uid, role] of [[ids.class3a, ids.tom, 'LEADER'], [ids.class3a, ids.ida, 'MEMBER'],
    [ids.class3a, ids.ole, 'MEMBER'], [club.json.id, ids.ole, 'MEMBER']]) {
    const m = await post(`/api/v1/groups/${g}/members`, { user_id: uid, role });
    assert.equal(m.status, 201, m.text);
  }
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (s) await s.stop();
});

// On the provider's sign-in page: the user name (checked when it was
// filled in for us), the password, the button.
async function loginPage(page, username, { prefilled = false } = {}) {
  await page.waitForURL((u) => u.pathname.startsWith('/oidc/'));
  const name = page.getByLabel('Benutzername');
  await name.waitFor();
  if (prefilled) assert.equal(await name.inputValue(), username);
  else await name.fill(username);
  await page.getByLabel('Passwort', { exact: true }).fill(PASSWORDS[username]);
  await page.getByRole('button', { name: 'Anmelden' }).click();
}

async function launcherOf(page, given) {
  await page.getByRole('heading', { level: 1, name: `Hallo, ${given}!` }).waitFor({ timeout: 15000 });
  assert.equal(new URL(page.url()).pathname, '/');
}

// What the device keeps: for each account only sub, user name and name.
async function deviceStorage(page) {
  return page.evaluate(() => ({ local: { ...localStorage }, session: { ...sessionStorage } }));
}

function assertNoSecrets(stored) {
  const text = JSON.stringify(stored);
  assert.ok(!/eyJ[A-Za-z0-9_-]{10,}/.test(text), `a token is stored on the device: ${text}`);
  const list = JSON.parse(stored.local['kreide.accounts'] || '[]');
  for (const a of list) assert.deepEqual(Object.keys(a).sort(), ['name', 'sub', 'username']);
}

test('a teacher signs in, sees schools and groups, and issues a reset code a pupil can use', async () => {
  for (const vp of viewports) {
    const { context, page } = await openPage(browser, s.url, { viewport: vp, locale: 'de-DE' });
    try {
      await page.goto(`${s.url}/`);
      await page.getByRole('button', { name: 'Anmelden', exact: true }).click();
      await loginPage(page, 'tom.lehrer');
      await launcherOf(page, 'Tom');
      const main = page.locator('main');
      await main.getByRole('heading', { name: 'Grundschule am Hafen' }).waitFor();
      assert.match(await main.textContent(), /Lehrkraft/);
      assert.match(await main.textContent(), /3a/);
      assert.ok(await main.getByRole('link', { name: 'Chat' }).isVisible());
      assert.deepEqual(await page.locator('.app-tile-off .app-name').allTextContents(), ['Dateien', 'Video', 'Kalender']);
      await screenshot(page, `launcher-teacher-de-${vp.width}x${vp.height}`);
      await noSeriousViolations(page, `launcher ${vp.name}`);
      assertNoSecrets(await deviceStorage(page));
      assert.deepEqual(page.problems, []);

      if (vp.name === 'phone') {
        await main.getByRole('link', { name: 'Reset-Codes für 3a' }).click();
        await page.getByRole('heading', { level: 1, name: 'Reset-Codes: 3a' }).waitFor();
        // Pupils of the class, not the teacher.
        await page.getByRole('button', { name: 'Reset-Code für Ida Hansen' }).waitFor();
        assert.equal(await page.getByRole('button', { name: 'Reset-Code für Tom Lehmann' }).count(), 0);
        await noSeriousViolations(page, 'class codes');
        await page.getByRole('button', { name: 'Reset-Code für Ida Hansen' }).click();
        const big = page.locator('.code-big');
        await big.waitFor();
        const code = (await big.textContent()).trim();
        assert.match(code, /^[3479ACDEFGHJKMNPRTUVWXY]{4}-[3479ACDEFGHJKMNPRTUVWXY]{4}-[3479ACDEFGHJKMNPRTUVWXY]{4}$/);
        // Large enough to read out: at least 32 CSS pixels.
        const size = await big.evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
        assert.ok(size >= 32, `the code is ${size}px`);
        await screenshot(page, 'reset-code-de-375x667');
        await noSeriousViolations(page, 'reset code');
        PASSWORDS['ida.hansen'] = 'ein neuer satz fuer ida';
        const e = await api(`${s.url}/api/v1/enroll`, {
          method: 'POST', body: { username: 'ida.hansen', code, password: PASSWORDS['ida.hansen'] },
        });
        assert.equal(e.status, 200, e.text);
      }
    } finally {
      await context.close();
    }
  }
});

test('a reload gets the tokens back silently, without the sign-in page', async () => {
  const { context, page } = await openPage(browser, s.url, { locale: 'de-DE' });
  try {
    await page.goto(`${s.url}/`);
    await page.getByRole('button', { name: 'Anmelden', exact: true }).click();
    await loginPage(page, 'ole.hansen');
    await launcherOf(page, 'Ole');
    const silent = [];
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.pathname === '/oidc/authorize') silent.push(u.searchParams.get('prompt'));
    });
    await page.reload();
    await launcherOf(page, 'Ole');
    assert.deepEqual(silent, ['none']);
    assert.match(await page.locator('main').textContent(), /Chor-AG/);
    assert.equal(await page.getByRole('link', { name: /Reset-Codes/ }).count(), 0, 'a pupil has no code pages');
  } finally {
    await context.close();
  }
});

test('siblings on one device: add, switch, sign out of one; nothing of one shows for the other', async () => {
  const { context, page } = await openPage(browser, s.url, { locale: 'de-DE' });
  try {
    await page.goto(`${s.url}/`);
    await page.getByRole('button', { name: 'Anmelden', exact: true }).click();
    await loginPage(page, 'ida.hansen');
    await launcherOf(page, 'Ida');

    // Add Ole: the provider's sign-in page, even though Ida is signed in.
    await page.getByRole('link', { name: /Konten/ }).click();
    await page.getByRole('heading', { level: 1, name: 'Konten auf diesem Gerät' }).waitFor();
    await page.getByRole('button', { name: 'Konto hinzufügen' }).click();
    await loginPage(page, 'ole.hansen');
    await launcherOf(page, 'Ole');
    assert.match(await page.locator('main').textContent(), /Chor-AG/);
    let stored = await deviceStorage(page);
    assertNoSecrets(stored);
    assert.deepEqual(JSON.parse(stored.local['kreide.accounts']).map((a) => a.username).sort(), ['ida.hansen', 'ole.hansen']);

    await page.getByRole('link', { name: /Konten/ }).click();
    await screenshot(page, 'accounts-de-375x667');
    await noSeriousViolations(page, 'accounts');

    // Switch to Ida. Both sessions live in the device's sign-on cookie, so
    // the provider answers for Ida at once (login_hint), with no page and
    // no password, and never with Ole's session.
    const headings = [];
    const visited = [];
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) visited.push(new URL(f.url()).pathname); });
    page.on('load', async () => {
      try { headings.push(await page.locator('h1').first().textContent({ timeout: 2000 })); } catch { /* navigated on */ }
    });
    await page.getByRole('button', { name: 'Zu Ida Hansen wechseln' }).click();
    await launcherOf(page, 'Ida');
    assert.ok(!visited.includes('/oidc/login'), `a sign-in page appeared while switching: ${visited}`);
    let main = await page.locator('main').textContent();
    assert.ok(!main.includes('Chor-AG'), 'Ole\'s club shows for Ida');
    assert.ok(!headings.includes('Hallo, Ole!'), `Ole's launcher showed while switching to Ida: ${headings}`);
    // And back to Ole the same way.
    await page.getByRole('link', { name: /Konten/ }).click();
    await page.getByRole('button', { name: 'Zu Ole Hansen wechseln' }).click();
    await launcherOf(page, 'Ole');
    assert.match(await page.locator('main').textContent(), /Chor-AG/);
    assert.ok(!visited.includes('/oidc/login'), `a sign-in page appeared while switching: ${visited}`);

    // Sign Ole out: his session ends at the provider (his ID token as the
    // hint), the device forgets him, and Ida's session stays: switching to
    // her still needs no password.
    await page.getByRole('link', { name: /Konten/ }).click();
    await page.getByRole('button', { name: 'Ole Hansen abmelden' }).click();
    await page.getByRole('heading', { level: 1, name: 'Willkommen bei Kreide' }).waitFor({ timeout: 15000 });
    stored = await deviceStorage(page);
    assert.deepEqual(JSON.parse(stored.local['kreide.accounts']).map((a) => a.username), ['ida.hansen']);
    await page.goto(`${s.url}/accounts`);
    await page.getByRole('button', { name: 'Zu Ida Hansen wechseln' }).click();
    await launcherOf(page, 'Ida');
    assert.ok(!visited.includes('/oidc/login'), `a sign-in page appeared after Ole signed out: ${visited}`);
    main = await page.locator('main').textContent();
    assert.ok(!main.includes('Chor-AG'), 'Ole\'s club shows for Ida');
    await page.getByRole('link', { name: /Konten/ }).click();
    await page.getByRole('heading', { level: 1, name: 'Konten auf diesem Gerät' }).waitFor();
    assert.ok(!(await page.locator('main').textContent()).includes('Ole Hansen'));

    // Sign Ida out: her session ends at the provider; back at the start.
    await page.getByRole('button', { name: 'Ida Hansen abmelden' }).click();
    await page.getByRole('heading', { level: 1, name: 'Willkommen bei Kreide' }).waitFor({ timeout: 15000 });
    stored = await deviceStorage(page);
    assert.deepEqual(JSON.parse(stored.local['kreide.accounts'] || '[]'), []);
    // Nobody is signed in on this device any more: signing in asks again.
    await page.getByRole('button', { name: 'Anmelden', exact: true }).click();
    await page.waitForURL((u) => u.pathname.startsWith('/oidc/'));
    await page.getByLabel('Passwort', { exact: true }).waitFor();
    assert.deepEqual(page.problems, []);
  } finally {
    await context.close();
  }
});

test('a school admin finds people and issues an enrollment code', async () => {
  const { context, page } = await openPage(browser, s.url, { viewport: viewports[1], locale: 'en-GB' });
  try {
    await page.goto(`${s.url}/`);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL((u) => u.pathname.startsWith('/oidc/'));
    await page.getByLabel('User name').fill('anke.admin');
    await page.getByLabel('Password', { exact: true }).fill(PASSWORDS['anke.admin']);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Hello, Anke!' }).waitFor({ timeout: 15000 });
    await page.getByRole('link', { name: 'Manage Grundschule am Hafen' }).click();
    await page.getByRole('heading', { level: 1, name: 'Manage: Grundschule am Hafen' }).waitFor();
    // Everyone at first, then what the search finds.
    await page.getByRole('button', { name: 'Enrollment code for Tom Lehmann' }).waitFor();
    await page.getByLabel('Search people').fill('han');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('button', { name: 'Enrollment code for Tom Lehmann' }).waitFor({ state: 'detached' });
    await page.getByRole('button', { name: 'Enrollment code for Ole Hansen' }).waitFor();
    await page.getByRole('button', { name: 'Enrollment code for Ida Hansen' }).waitFor();
    await screenshot(page, 'admin-people-en-1280x800');
    await noSeriousViolations(page, 'admin people');
    await page.getByRole('button', { name: 'Groups', exact: true }).click();
    await page.getByRole('button', { name: 'Members of 3a' }).click();
    await page.locator('.members').getByText('Tom Lehmann').waitFor();
    await noSeriousViolations(page, 'admin groups');
    await page.getByRole('button', { name: 'People', exact: true }).click();
    await page.getByRole('button', { name: 'Reset code for Ole Hansen' }).click();
    const code = (await page.locator('.code-big').textContent()).trim();
    await screenshot(page, 'admin-code-en-1280x800');
    PASSWORDS['ole.hansen'] = 'ole hat einen neuen satz';
    const e = await api(`${s.url}/api/v1/enroll`, {
      method: 'POST', body: { username: 'ole.hansen', code, password: PASSWORDS['ole.hansen'] },
    });
    assert.equal(e.status, 200, e.text);
    assert.deepEqual(page.problems, []);
  } finally {
    await context.close();
  }
});
