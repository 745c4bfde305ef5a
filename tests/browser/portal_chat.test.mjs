// The portal's chat in Debian's Chromium, against real daemons and the
// gateway's WebSocket hub: (1) a teacher signs in, opens the class room and
// posts an announcement in the class's announcement channel; (2) a parent,
// in a browser of her own, sees it arrive without a reload, over the
// socket, and confirms reading, and the teacher's view shows "read by 1";
// (3) a pupil sets a password with a code the teacher issued in the
// portal; (4) two siblings share one browser and each sees only their own
// rooms; (5) axe-core on the sign-in, launcher, chat and admin pages. Also:
// the school admin's chat rules and retention, and a direct chat that the
// rules refuse, explained. Screenshots of each step at 375×667 and 1280×800
// in $KREIDE_TEST_OUT/browser/ (chat-*.png).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, until } from '../lib/kreide.mjs';
import { launch, openPage, screenshot, viewports, startPortalSuite, noSeriousViolations } from '../lib/browser.mjs';

const PASSWORDS = {
  'tom.lehrer': 'der hafen ist heute still',
  'paula.peters': 'paula liest gern am abend',
  'ole.hansen': 'ole spielt gern fussball im regen',
  'anke.admin': 'verwaltung mit langem satz',
};
const CLASS_ROOM = '3a';
const CHANNEL = '3a · Ankündigungen';
// Messages the service has (not the ones still being sent).
const SENT = '.timeline .msg:not(.msg-pending)';
let s;
let browser;
let op;
const ids = {};

const post = (p, body, token = op) => api(`${s.url}${p}`, { method: 'POST', token, body });

async function person(username, given, family, role, { password = true } = {}) {
  const u = await post('/api/v1/users', {
    username, given_name: given, family_name: family, contexts: [{ school_id: ids.school, role }],
  });
  assert.equal(u.status, 201, u.text);
  if (password) {
    const code = await post(`/api/v1/users/${u.json.id}/codes`, { school_id: ids.school, purpose: 'ENROLLMENT' });
    assert.equal(code.status, 201, code.text);
    const e = await api(`${s.url}/api/v1/enroll`, { method: 'POST', body: { username, code: code.json.code, password: PASSWORDS[username] } });
    assert.equal(e.status, 200, e.text);
  }
  return u.json.id;
}

before(async () => {
  ({ s, op } = await startPortalSuite({
    name: 'portalchat', redis: 13,
    // Roster rooms follow the groups made below within seconds.
    env: { KREIDE_MESSAGING_RECONCILE_S: '2' },
  }));

  const school = await post('/api/v1/schools', { name: 'Grundschule am Hafen', kind: 'SCHOOL', kennung: 'CHAT-1' });
  assert.equal(school.status, 201, school.text);
  ids.school = school.json.id;
  ids.tom = await person('tom.lehrer', 'Tom', 'Lehmann', 'TEACHER');
  ids.paula = await person('paula.peters', 'Paula', 'Peters', 'PARENT');
  ids.ida = await person('ida.hansen', 'Ida', 'Hansen', 'PUPIL', { password: false });
  ids.ole = await person('ole.hansen', 'Ole', 'Hansen', 'PUPIL');
  ids.anke = await person('anke.admin', 'Anke', 'Albers', 'SCHOOL_ADMIN');
  const cls = await post(`/api/v1/schools/${ids.school}/groups`, { kind: 'CLASS', name: CLASS_ROOM, school_year: '2026/27' });
  assert.equal(cls.status, 201, cls.text);
  const club = await post(`/api/v1/schools/${ids.school}/groups`, { kind: 'CLUB', name: 'Chor-AG', school_year: '2026/27' });
  assert.equal(club.status, 201, club.text);
  // The class with its teacher, two pupils and a parent; the club with Ole.
  for (const [g, uid, role] of [[cls.json.id, ids.tom, 'LEADER'], [cls.json.id, ids.ida, 'MEMBER'],
    [cls.json.id, ids.ole, 'MEMBER'], [cls.json.id, ids.paula, 'MEMBER'], [club.json.id, ids.ole, 'MEMBER']]) {
    const m = await post(`/api/v1/groups/${g}/members`, { user_id: uid, role });
    assert.equal(m.status, 201, m.text);
  }
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (s) await s.stop();
});

// The page as it is now, at both sizes, then back to the size it had.
async function shots(page, name) {
  const was = page.viewportSize();
  for (const vp of viewports) {
    await page.setViewportSize({ width: vp.width, height: vp.height });
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name}: the page is ${overflow} px wider than ${vp.width} px`);
    await screenshot(page, `chat-${name}-${vp.width}x${vp.height}`);
  }
  await page.setViewportSize(was);
}

// Signs in from the portal's start through the provider's login page
// (German), checked with axe on the way when asked.
async function signIn(page, username, given, { axe = false, fromStart = true } = {}) {
  if (fromStart) {
    await page.goto(`${s.url}/`);
    await page.getByRole('button', { name: 'Anmelden', exact: true }).click();
  }
  await page.waitForURL((u) => u.pathname.startsWith('/oidc/'));
  const name = page.getByLabel('Benutzername');
  await name.waitFor();
  if (!(await name.inputValue())) await name.fill(username);
  else assert.equal(await name.inputValue(), username);
  if (axe) {
    await noSeriousViolations(page, 'the provider\'s login page');
    await shots(page, '1-login');
  }
  await page.getByLabel('Passwort', { exact: true }).fill(PASSWORDS[username]);
  await page.getByRole('button', { name: 'Anmelden' }).click();
  await page.getByRole('heading', { level: 1, name: `Hallo, ${given}!` }).waitFor({ timeout: 15000 });
}

const exactly = (text) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
const roomLink = (page, name) => page.locator('.room-list .room-link').filter({ has: page.locator('.room-name', { hasText: exactly(name) }) });

// The chat's room list, waiting (with reloads of the list by the chat
// itself) until `names` are there.
async function openChat(page, names) {
  await page.locator('main').getByRole('link', { name: 'Chat', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'Chat' }).waitFor();
  for (const n of names) await roomLink(page, n).waitFor({ timeout: 20000 });
}

async function roomNames(page) {
  return (await page.locator('.room-list .room-name').allTextContents()).sort();
}

// Every WebSocket frame a page receives, parsed.
function recordFrames(page) {
  const frames = [];
  page.on('websocket', (ws) => {
    if (!ws.url().includes('/api/v1/ws')) return;
    ws.on('framereceived', (f) => { try { frames.push(JSON.parse(f.payload)); } catch { /* not JSON */ } });
  });
  return frames;
}

let teacher; // { context, page } kept from (1) to (2)
let issuedCode;

test('(1) a teacher signs in, opens the class room and posts an announcement', async () => {
  teacher = await openPage(browser, s.url, { viewport: viewports[1], locale: 'de-DE' });
  const { page } = teacher;
  await page.goto(`${s.url}/`);
  await noSeriousViolations(page, 'the sign-in start');
  await shots(page, '1-start');
  await signIn(page, 'tom.lehrer', 'Tom', { axe: true });
  await noSeriousViolations(page, 'launcher');
  await shots(page, '1-launcher');

  // The class's room exists by itself (it follows the group).
  await openChat(page, [CLASS_ROOM]);
  await noSeriousViolations(page, 'chat room list');
  await roomLink(page, CLASS_ROOM).click();
  await page.getByRole('heading', { level: 1, name: CLASS_ROOM }).waitFor();
  await page.getByText('Noch keine Nachrichten.').waitFor();
  await shots(page, '1-class-room');
  await noSeriousViolations(page, 'class room');

  // A message in the class room, with a mention of Ida.
  const box = page.getByLabel(`Nachricht an ${CLASS_ROOM}`);
  await box.fill('Guten Morgen, ');
  await box.press('End');
  await box.pressSequentially('@Id');
  await page.getByRole('button', { name: 'Ida Hansen erwähnen' }).click();
  assert.equal(await box.inputValue(), 'Guten Morgen, @Ida Hansen ');
  await box.pressSequentially('bitte an das **Heft** denken.');
  await page.getByRole('button', { name: 'Senden', exact: true }).click();
  // Shown at once as "sending", then as sent (with its time).
  const sent = page.locator(SENT).filter({ hasText: 'bitte an das Heft denken.' });
  await sent.waitFor();
  assert.equal(await sent.locator('strong', { hasText: 'Heft' }).count(), 1, 'markdown is rendered');
  await page.locator('.msg-pending').waitFor({ state: 'detached' });

  // The class's announcement channel: made from the class room, following
  // the class.
  await page.getByRole('button', { name: `Ankündigungskanal für ${CLASS_ROOM} anlegen` }).click();
  await page.getByRole('heading', { level: 1, name: CHANNEL }).waitFor();
  const first = 'Willkommen im Ankündigungskanal der 3a.';
  await page.getByLabel(`Nachricht an ${CHANNEL}`).fill(first);
  await page.getByRole('button', { name: 'Senden', exact: true }).click();
  await page.locator(SENT).filter({ hasText: first }).locator('.read-count').waitFor();
  // The audience is everyone of the class but the teacher: Ida, Ole, Paula.
  assert.equal(await page.locator(SENT).filter({ hasText: first }).locator('.read-count').textContent(),
    'Gelesen: 0 von 3 · bestätigt: 0');
  await shots(page, '1-announcement');
  await noSeriousViolations(page, 'announcement channel');
  assert.deepEqual(page.problems, []);
});

test('(2) a parent sees the announcement arrive without reloading, confirms reading, and the teacher sees "read by 1"', async () => {
  assert.ok(teacher, 'step (1) ran');
  const parent = await openPage(browser, s.url, { viewport: viewports[0], locale: 'de-DE' });
  const { page } = parent;
  const frames = recordFrames(page);
  try {
    await signIn(page, 'paula.peters', 'Paula');
    await openChat(page, [CHANNEL, CLASS_ROOM]);
    // The first announcement is unread: a badge on the channel.
    const badge = roomLink(page, CHANNEL).locator('.unread');
    await badge.waitFor();
    assert.equal(await badge.locator('[aria-hidden="true"]').textContent(), '1');
    assert.equal(await badge.locator('.visually-hidden').textContent(), '1 ungelesen');
    await shots(page, '2-parent-rooms');
    await noSeriousViolations(page, 'parent room list');
    await roomLink(page, CHANNEL).click();
    await page.getByRole('heading', { level: 1, name: CHANNEL }).waitFor();
    await page.getByText('Willkommen im Ankündigungskanal der 3a.').waitFor();
    // Only moderators write here: no composer for a parent.
    assert.equal(await page.getByLabel(`Nachricht an ${CHANNEL}`).count(), 0);
    await page.getByText('Hier schreiben nur Moderator*innen.').waitFor();
    await until(async () => frames.some((f) => f.type === 'ready'), { what: 'the socket is live', timeoutMs: 15000 });

    // The page must not load again: a mark in the window survives.
    await page.evaluate(() => { window.chatMark = 'still here'; });
    const text = 'Elternabend am Donnerstag um 19 Uhr im Raum 12.';
    const tpage = teacher.page;
    await tpage.getByLabel(`Nachricht an ${CHANNEL}`).fill(text);
    await tpage.getByRole('button', { name: 'Senden', exact: true }).click();

    const arrived = page.locator(SENT).filter({ hasText: text });
    await arrived.waitFor({ timeout: 15000 });
    assert.equal(await page.evaluate(() => window.chatMark), 'still here', 'the page was reloaded');
    assert.ok(frames.some((f) => f.type === 'event' && f.event && f.event.kind === 'MESSAGE' && f.event.message && f.event.message.text === text),
      'the announcement came over the WebSocket');
    await shots(page, '2-parent-arrived');
    await noSeriousViolations(page, 'parent announcement');

    await arrived.getByRole('button', { name: 'Gelesen – bestätigen' }).click();
    await arrived.getByText('Du hast das Lesen bestätigt.').waitFor();

    // The teacher's view follows, without a reload.
    const count = tpage.locator(SENT).filter({ hasText: text }).locator('.read-count');
    await until(async () => (await count.textContent()) === 'Gelesen: 1 von 3 · bestätigt: 1', { what: 'read by 1 on the teacher\'s page', timeoutMs: 15000 });
    await tpage.locator(SENT).filter({ hasText: text }).getByRole('button', { name: 'Wer hat gelesen?' }).click();
    await tpage.locator('.read-who dd').first().getByText('Paula Peters').waitFor();
    await shots(tpage, '2-teacher-read-by-1');
    await noSeriousViolations(tpage, 'teacher read status');

    // A reply, a reaction and a report in the class room, by the parent.
    await page.getByRole('link', { name: 'Alle Chats' }).click();
    await roomLink(page, CLASS_ROOM).click();
    const msg = page.locator(SENT).filter({ hasText: 'bitte an das Heft denken.' });
    await msg.waitFor();
    await msg.getByRole('button', { name: 'Reagieren' }).click();
    await msg.getByRole('button', { name: 'Mit 👍 reagieren' }).click();
    await msg.getByRole('button', { name: '👍: 1' }).waitFor();
    assert.equal(await msg.getByRole('button', { name: '👍: 1' }).getAttribute('aria-pressed'), 'true');
    await msg.getByRole('button', { name: 'Antworten' }).click();
    await page.getByLabel(`Nachricht an ${CLASS_ROOM}`).fill('Danke, machen wir!');
    await page.getByLabel(`Nachricht an ${CLASS_ROOM}`).press('Enter');
    const reply = page.locator(SENT).filter({ hasText: 'Danke, machen wir!' });
    await reply.locator('.reply-ref').getByText(/Tom Lehmann/).waitFor();
    // The teacher sees both, live.
    const tclass = roomLink(tpage, CLASS_ROOM);
    await tclass.locator('.unread').waitFor({ timeout: 15000 });
    await tclass.click();
    await tpage.locator(SENT).filter({ hasText: 'Danke, machen wir!' }).waitFor();
    await tpage.locator(SENT).filter({ hasText: 'bitte an das Heft denken.' }).getByRole('button', { name: '👍: 1' }).waitFor();
    await shots(tpage, '2-teacher-class-room');
    assert.deepEqual(page.problems, []);
    assert.deepEqual(tpage.problems, []);
  } finally {
    await parent.context.close();
  }
});

test('(3) a pupil sets a password with a code the teacher issued in the portal', async () => {
  const { page } = teacher;
  await page.goto(`${s.url}/`);
  await page.getByRole('heading', { level: 1, name: 'Hallo, Tom!' }).waitFor({ timeout: 15000 });
  await page.getByRole('link', { name: `Reset-Codes für ${CLASS_ROOM}` }).click();
  await page.getByRole('button', { name: 'Reset-Code für Ida Hansen' }).click();
  issuedCode = (await page.locator('.code-big').textContent()).trim();
  assert.match(issuedCode, /^[3479ACDEFGHJKMNPRTUVWXY]{4}(-[3479ACDEFGHJKMNPRTUVWXY]{4}){2}$/);
  await shots(page, '3-teacher-code');
  await noSeriousViolations(page, 'teacher code card');
  await teacher.context.close();

  const pupil = await openPage(browser, s.url, { viewport: viewports[0], locale: 'de-DE' });
  try {
    const p = pupil.page;
    await p.goto(`${s.url}/`);
    await p.getByRole('link', { name: 'Mit Code ein Passwort wählen' }).click();
    await p.getByRole('heading', { level: 1, name: 'Passwort wählen' }).waitFor();
    await p.getByLabel('Benutzername').fill('ida.hansen');
    await p.getByLabel('Code', { exact: true }).fill(issuedCode);
    PASSWORDS['ida.hansen'] = 'ida mag die blaue tafel';
    await p.getByLabel('Neues Passwort').fill(PASSWORDS['ida.hansen']);
    await p.getByLabel('Passwort wiederholen').fill(PASSWORDS['ida.hansen']);
    await shots(p, '3-enroll-form');
    await p.getByRole('button', { name: 'Passwort speichern' }).click();
    await p.getByText('Geschafft! Dein Passwort ist gespeichert.').waitFor();
    await shots(p, '3-enroll-done');
    await noSeriousViolations(p, 'enroll done');
    // And it signs in.
    await p.getByRole('button', { name: 'Jetzt anmelden' }).click();
    await signIn(p, 'ida.hansen', 'Ida', { fromStart: false });
    assert.deepEqual(p.problems, []);
  } finally {
    await pupil.context.close();
  }
});

test('(4) two siblings in one browser: switching shows each one\'s own rooms only', async () => {
  const { context, page } = await openPage(browser, s.url, { viewport: viewports[0], locale: 'de-DE' });
  const seenRooms = [];
  try {
    await signIn(page, 'ida.hansen', 'Ida');
    await openChat(page, [CLASS_ROOM, CHANNEL]);
    assert.deepEqual(await roomNames(page), [CLASS_ROOM, CHANNEL].sort());
    await shots(page, '4-ida-rooms');

    // Add Ole: the provider's sign-in page, then his launcher and chat.
    await page.getByRole('link', { name: /Konten/ }).click();
    await page.getByRole('button', { name: 'Konto hinzufügen' }).click();
    await signIn(page, 'ole.hansen', 'Ole', { fromStart: false });
    await openChat(page, [CLASS_ROOM, CHANNEL, 'Chor-AG']);
    assert.deepEqual(await roomNames(page), [CLASS_ROOM, CHANNEL, 'Chor-AG'].sort());
    await shots(page, '4-ole-rooms');
    await noSeriousViolations(page, 'Ole\'s rooms');

    // Every room list rendered from now on is recorded: none of Ida's may
    // ever show Ole's club.
    await page.exposeFunction('recordRooms', (who, names) => seenRooms.push({ who, names }));
    await page.addInitScript(() => {
      new MutationObserver(() => {
        const names = [...document.querySelectorAll('.room-list .room-name')].map((e) => e.textContent);
        const who = document.querySelector('.account-chip-name');
        if (names.length) window.recordRooms(who ? who.textContent : '', names);
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });

    // Switch to Ida. The device's sign-on cookie holds both sessions, so
    // the provider answers for Ida at once, without asking for a password;
    // then the chat shows her rooms only.
    const visited = [];
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) visited.push(new URL(f.url()).pathname); });
    await page.getByRole('link', { name: /Konten/ }).click();
    await page.getByRole('button', { name: 'Zu Ida Hansen wechseln' }).click();
    await page.getByRole('heading', { level: 1, name: 'Hallo, Ida!' }).waitFor({ timeout: 15000 });
    assert.ok(!visited.includes('/oidc/login'), `a sign-in page appeared while switching: ${visited}`);
    await openChat(page, [CLASS_ROOM, CHANNEL]);
    assert.deepEqual(await roomNames(page), [CLASS_ROOM, CHANNEL].sort());
    await shots(page, '4-ida-again');
    for (const r of seenRooms) {
      if (r.who.includes('Ida')) assert.ok(!r.names.includes('Chor-AG'), `Ole's club showed for Ida: ${JSON.stringify(r)}`);
    }
    // Nothing of either account is kept on the device but sub, user name and name.
    const stored = await page.evaluate(() => ({ local: { ...localStorage }, session: { ...sessionStorage } }));
    assert.ok(!/eyJ[A-Za-z0-9_-]{10,}/.test(JSON.stringify(stored)), 'a token is stored on the device');
    assert.ok(!/Chor-AG|Ankündigungen/.test(JSON.stringify(stored)), 'chat data is stored on the device');
    assert.deepEqual(page.problems, []);
  } finally {
    await context.close();
  }
});

test('(5) the school admin sets the chat rules and retention; a refused direct chat is explained', async () => {
  const { context, page } = await openPage(browser, s.url, { viewport: viewports[1], locale: 'de-DE' });
  try {
    await signIn(page, 'anke.admin', 'Anke');
    await page.getByRole('link', { name: 'Verwaltung von Grundschule am Hafen' }).click();
    await page.getByRole('heading', { level: 1, name: 'Verwaltung: Grundschule am Hafen' }).waitFor();
    await page.getByRole('button', { name: 'Anmeldecode für Tom Lehmann' }).waitFor();
    await shots(page, '5-admin-people');
    await noSeriousViolations(page, 'admin people');
    await page.getByRole('button', { name: 'Gruppen', exact: true }).click();
    await page.getByRole('button', { name: `Mitglieder von ${CLASS_ROOM}` }).click();
    await page.locator('.members').getByText('Paula Peters').waitFor();
    await noSeriousViolations(page, 'admin groups');

    await page.getByRole('button', { name: 'Chat-Regeln', exact: true }).click();
    await page.getByRole('heading', { name: 'Regeln für den Chat' }).waitFor();
    // The school preset: pupils may write to teachers, not to pupils.
    const pupilsTo = page.getByRole('group', { name: 'Schüler*innen dürfen Direktchats beginnen mit:' });
    assert.equal(await pupilsTo.getByLabel('Lehrkräfte').isChecked(), true);
    assert.equal(await pupilsTo.getByLabel('Schüler*innen').isChecked(), false);
    // Parents may no longer start chats with teachers; 30 days' retention.
    const parentsTo = page.getByRole('group', { name: 'Eltern dürfen Direktchats beginnen mit:' });
    await parentsTo.getByLabel('Lehrkräfte').uncheck();
    await page.getByLabel('Nachrichten löschen nach (Tagen)').fill('abc');
    await page.getByRole('button', { name: 'Regeln speichern' }).click();
    await page.getByText('Bitte eine ganze Zahl von 0 bis 3650.').first().waitFor();
    await page.getByLabel('Nachrichten löschen nach (Tagen)').fill('30');
    await page.getByRole('button', { name: 'Regeln speichern' }).click();
    await page.getByText('Gespeichert.').waitFor();
    await page.getByText('Jetzt: Nachrichten werden nach 30 Tagen gelöscht.').waitFor();
    await shots(page, '5-admin-rules');
    await noSeriousViolations(page, 'admin chat rules');
    const policy = await api(`${s.url}/api/v1/schools/${ids.school}/messaging-policy`, { token: op });
    assert.equal(policy.json.retention_days, 30);
    assert.ok(!policy.json.direct_rules.some((r) => r.from === 'parent' && r.to === 'teacher'), JSON.stringify(policy.json));
    assert.ok(policy.json.direct_rules.some((r) => r.from === 'pupil' && r.to === 'teacher'));
    assert.equal(policy.json.customized, true);
    assert.deepEqual(page.problems, []);
  } finally {
    await context.close();
  }

  // Ole, a pupil: a direct chat with a classmate is refused and explained;
  // one with his teacher opens. The class room tells of the 30 days.
  const pupil = await openPage(browser, s.url, { viewport: viewports[0], locale: 'de-DE' });
  try {
    const p = pupil.page;
    await signIn(p, 'ole.hansen', 'Ole');
    await openChat(p, [CLASS_ROOM]);
    await p.getByRole('link', { name: 'Neuer Chat' }).click();
    await p.getByRole('heading', { level: 1, name: 'Neuer Chat' }).waitFor();
    await p.getByText('An deiner Schule kannst du Direktchats beginnen mit:').waitFor();
    await p.getByRole('button', { name: 'Chat mit Ida Hansen' }).click();
    await p.getByRole('alert').filter({ hasText: 'Deine Schule erlaubt nicht, dass Schüler*innen einen Direktchat mit Schüler*innen beginnen.' }).waitFor();
    await shots(p, '5-dm-refused');
    await noSeriousViolations(p, 'new chat, refused');
    await p.getByRole('button', { name: 'Chat mit Tom Lehmann' }).click();
    await p.getByRole('heading', { level: 1, name: 'Tom Lehmann' }).waitFor();
    await p.getByLabel('Nachricht an Tom Lehmann').fill('Hallo Herr Lehmann, ich habe eine Frage.');
    await p.getByRole('button', { name: 'Senden', exact: true }).click();
    await p.locator(SENT).filter({ hasText: 'ich habe eine Frage' }).waitFor();
    await shots(p, '5-dm');

    await p.getByRole('link', { name: 'Alle Chats' }).click();
    await roomLink(p, CLASS_ROOM).click();
    await p.getByRole('link', { name: 'Infos und Mitglieder' }).click();
    await p.getByRole('heading', { level: 1, name: `Infos: ${CLASS_ROOM}` }).waitFor();
    await p.getByText('Nachrichten in diesem Chat werden nach 30 Tagen gelöscht.').waitFor();
    await p.locator('.room-info .person').filter({ hasText: 'Tom Lehmann' }).getByText('Moderation').waitFor();
    await shots(p, '5-room-info');
    await noSeriousViolations(p, 'room info');
    assert.deepEqual(p.problems, []);
  } finally {
    await pupil.context.close();
  }
});

test('a moderator mutes a member, locks the room and removes a message; a report reaches the moderators', async () => {
  const mod = await openPage(browser, s.url, { viewport: viewports[1], locale: 'en-GB' });
  const member = await openPage(browser, s.url, { viewport: viewports[0], locale: 'en-GB' });
  try {
    const tp = mod.page;
    const op2 = member.page;
    await tp.goto(`${s.url}/`);
    await tp.getByRole('button', { name: 'Sign in', exact: true }).click();
    await tp.getByLabel('User name').fill('tom.lehrer');
    await tp.getByLabel('Password', { exact: true }).fill(PASSWORDS['tom.lehrer']);
    await tp.getByRole('button', { name: 'Sign in' }).click();
    await tp.getByRole('heading', { level: 1, name: 'Hello, Tom!' }).waitFor({ timeout: 15000 });
    await tp.locator('main').getByRole('link', { name: 'Chat', exact: true }).click();
    await roomLink(tp, CLASS_ROOM).click();
    await tp.getByRole('heading', { level: 1, name: CLASS_ROOM }).waitFor();

    await op2.goto(`${s.url}/`);
    await op2.getByRole('button', { name: 'Sign in', exact: true }).click();
    await op2.getByLabel('User name').fill('ole.hansen');
    await op2.getByLabel('Password', { exact: true }).fill(PASSWORDS['ole.hansen']);
    await op2.getByRole('button', { name: 'Sign in' }).click();
    await op2.getByRole('heading', { level: 1, name: 'Hello, Ole!' }).waitFor({ timeout: 15000 });
    await op2.locator('main').getByRole('link', { name: 'Chat', exact: true }).click();
    await roomLink(op2, CLASS_ROOM).click();
    await op2.getByLabel(`Message to ${CLASS_ROOM}`).fill('Das ist gemein!');
    await op2.getByRole('button', { name: 'Send', exact: true }).click();

    // Ole reports Paula's reply; the moderator's page marks it at once.
    const reply = op2.locator(SENT).filter({ hasText: 'Danke, machen wir!' });
    await reply.getByRole('button', { name: /More actions/ }).click();
    await reply.getByRole('button', { name: 'Report' }).click();
    await reply.getByLabel('Why are you reporting this message?').fill('Test report');
    await reply.getByRole('button', { name: 'Send report' }).click();
    await reply.getByText('Thank you. The message is reported.').waitFor();
    await tp.locator(SENT).filter({ hasText: 'Danke, machen wir!' }).getByText('reported').waitFor({ timeout: 15000 });

    // The moderator removes Ole's message; it goes for both.
    const bad = tp.locator(SENT).filter({ hasText: 'Das ist gemein!' });
    await bad.waitFor({ timeout: 15000 });
    await bad.getByRole('button', { name: /More actions/ }).click();
    await bad.getByRole('button', { name: 'Remove (moderation)' }).click();
    await bad.getByRole('button', { name: 'Remove message' }).click();
    await tp.getByText('Removed by a moderator').waitFor();
    await op2.getByText('Removed by a moderator').waitFor({ timeout: 15000 });

    // Mute Ole, then lock the room: both reach Ole's page live.
    await tp.getByRole('link', { name: 'Info and members' }).click();
    await tp.getByRole('button', { name: 'Mute Ole Hansen' }).click();
    await tp.getByRole('button', { name: 'Unmute Ole Hansen' }).waitFor();
    await op2.getByText('You are muted in this chat and cannot write right now.').waitFor({ timeout: 15000 });
    await tp.getByRole('button', { name: 'Unmute Ole Hansen' }).click();
    await tp.getByRole('button', { name: 'Lock chat' }).click();
    await tp.getByRole('button', { name: 'Unlock chat' }).waitFor();
    await op2.getByText('This chat is locked: only moderators can write.').waitFor({ timeout: 15000 });
    await shots(tp, 'moderation-room-info-en');
    await shots(op2, 'moderation-locked-en');
    await noSeriousViolations(tp, 'moderation room info');
    await tp.getByRole('button', { name: 'Unlock chat' }).click();
    await op2.getByLabel(`Message to ${CLASS_ROOM}`).waitFor({ timeout: 15000 });

    // A poll by the teacher, a vote by Ole, results live on both.
    await tp.getByRole('link', { name: `Back to ${CLASS_ROOM}` }).click();
    await tp.getByRole('button', { name: 'Poll', exact: true }).click();
    await tp.getByLabel('Question').fill('Wohin geht der Ausflug?');
    await tp.getByLabel('Answer 1', { exact: true }).fill('Zoo');
    await tp.getByLabel('Answer 2', { exact: true }).fill('Museum');
    await tp.getByRole('button', { name: 'Start poll' }).click();
    const poll = op2.locator(SENT).filter({ hasText: 'Wohin geht der Ausflug?' });
    await poll.waitFor({ timeout: 15000 });
    await poll.getByLabel('Zoo').check();
    await poll.getByRole('button', { name: 'Vote' }).click();
    await poll.getByText('Zoo (your vote)').waitFor();
    await tp.locator(SENT).filter({ hasText: 'Wohin geht der Ausflug?' }).getByText('1 voted').waitFor({ timeout: 15000 });
    await shots(op2, 'poll-en');
    await noSeriousViolations(op2, 'poll');
    assert.deepEqual(tp.problems, []);
    assert.deepEqual(op2.problems, []);
  } finally {
    await mod.context.close();
    await member.context.close();
  }
});
