// The directory through the JSON API: carriers, schools, users, person
// contexts, groups, memberships, guardianships, the paged directory search,
// and the roster events identity publishes on Redis.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSuite, api, subscribe, until } from '../lib/kreide.mjs';

let s;
let op;
const ids = {};

before(async () => {
  s = await startSuite({ name: 'directory' });
  op = s.token({ roles: ['operator'] });
});
after(async () => s && s.stop());

const post = (path, body, token = op) => api(`${s.url}${path}`, { method: 'POST', token, body });
const get = (path, token = op) => api(`${s.url}${path}`, { token });

async function user(username, given, family, contexts = [], token = op) {
  const r = await post('/api/v1/users', { username, given_name: given, family_name: family, contexts }, token);
  assert.equal(r.status, 201, r.text);
  return r.json;
}

// Every page of a paged GET, following next_cursor.
async function allPages(path, key, token, limit = 2) {
  const seen = [];
  let cursor = '';
  for (let pages = 0; pages < 50; pages++) {
    const sep = path.includes('?') ? '&' : '?';
    const r = await get(`${path}${sep}page.limit=${limit}${cursor ? `&page.cursor=${cursor}` : ''}`, token);
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json[key].length <= limit);
    seen.push(...r.json[key]);
    cursor = r.json.page.next_cursor;
    if (!cursor) return seen;
  }
  throw new Error('paging did not end');
}

test('an operator creates a carrier and schools under it; its admin creates only its own', async () => {
  const c = await post('/api/v1/carriers', { name: 'Stadt Musterhausen' });
  assert.equal(c.status, 201, c.text);
  assert.equal(c.json.name, 'Stadt Musterhausen');
  ids.carrier = c.json.id;
  const other = await post('/api/v1/carriers', { name: 'Landkreis Nebenan' });
  ids.otherCarrier = other.json.id;

  const a = await post('/api/v1/schools', { name: 'Grundschule Lindenweg', kind: 'SCHOOL', carrier_id: ids.carrier });
  assert.equal(a.status, 201, a.text);
  assert.equal(a.json.carrier_id, ids.carrier);
  ids.a = a.json.id;
  const b = await post('/api/v1/schools', { name: 'Kita Sonnenblume', kind: 'KITA' });
  assert.equal(b.json.carrier_id, '');
  ids.b = b.json.id;

  const carrierAdmin = s.token({ roles: [`carrier_admin:${ids.carrier}`] });
  const own = await post('/api/v1/schools', { name: 'Oberschule Lindenweg', kind: 'SCHOOL', carrier_id: ids.carrier }, carrierAdmin);
  assert.equal(own.status, 201, own.text);
  const foreign = await post('/api/v1/schools', { name: 'Fremd', kind: 'SCHOOL', carrier_id: ids.otherCarrier }, carrierAdmin);
  assert.equal(foreign.status, 403);
  assert.equal(foreign.json.error.code, 'identity.forbidden');
  const none = await post('/api/v1/schools', { name: 'Ohne', kind: 'SCHOOL', carrier_id: '01890000-0000-7000-8000-000000000000' });
  assert.equal(none.status, 404);
  assert.equal(none.json.error.field, 'carrier_id');
});

test('users are created with person contexts; user names are unique and checked', async () => {
  const admin = await user('alice.admin', 'Alice', 'Adler', [{ school_id: ids.a, role: 'SCHOOL_ADMIN' }]);
  assert.equal(admin.display_name, 'Alice Adler');
  assert.equal(admin.contexts.length, 1);
  assert.equal(admin.contexts[0].role, 'SCHOOL_ADMIN');
  assert.equal(admin.contexts[0].schulconnex_role, 'OrgAdmin');
  ids.admin = admin.id;
  ids.adminToken = s.token({ sub: admin.id, schools: [`${ids.a}:school_admin`] });

  // The school admin creates the rest of the school.
  const t = ids.adminToken;
  ids.tina = (await user('tina.lehrer', 'Tina', 'Lehrer', [{ school_id: ids.a, role: 'TEACHER' }], t)).id;
  ids.paul = (await user('paul.schmidt', 'Paul', 'Schmidt', [{ school_id: ids.a, role: 'PUPIL' }], t)).id;
  ids.pia = (await user('pia.meyer', 'Pia', 'Meyer', [{ school_id: ids.a, role: 'PUPIL' }], t)).id;
  ids.peter = (await user('peter.schmidt', 'Peter', 'Schmidt', [{ school_id: ids.a, role: 'PARENT' }], t)).id;
  const sam = await user('sam.sekretariat', 'Sam', 'Sekretär', [{ school_id: ids.a, role: 'STAFF', schulconnex_role: 'Extern' }], t);
  ids.sam = sam.id;

  const dup = await post('/api/v1/users', { username: 'paul.schmidt', given_name: 'P', family_name: 'S',
    contexts: [{ school_id: ids.a, role: 'PUPIL' }] }, t);
  assert.equal(dup.status, 409);
  assert.equal(dup.json.error.code, 'identity.username_taken');
  for (const [body, field] of [
    [{ username: 'Paul', given_name: 'P', family_name: 'S' }, 'username'],
    [{ username: 'ab', given_name: 'P', family_name: 'S' }, 'username'],
    [{ username: 'okname', given_name: '', family_name: 'S' }, 'given_name'],
    [{ username: 'okname', given_name: 'P', family_name: 'S', contexts: [{ school_id: ids.a, role: 'PERSON_ROLE_UNSPECIFIED' }] },
      'contexts[0].role'],
    [{ username: 'okname', given_name: 'P', family_name: 'S', contexts: [{ school_id: ids.a, role: 'PUPIL', schulconnex_role: 'Boss' }] },
      'contexts[0].schulconnex_role'],
  ]) {
    const r = await post('/api/v1/users', body);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.field, field);
  }
});

test('person contexts: a user joins a second school; the admin reads only their school\'s part', async () => {
  // Tina also teaches at school B; the operator adds that.
  const r = await post(`/api/v1/schools/${ids.b}/people`, { user_id: ids.tina, role: 'TEACHER' });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.schulconnex_role, 'Lehr');
  const again = await post(`/api/v1/schools/${ids.b}/people`, { user_id: ids.tina, role: 'TEACHER' });
  assert.equal(again.status, 409);

  const byOp = await get(`/api/v1/users/${ids.tina}`);
  assert.equal(byOp.status, 200);
  assert.deepEqual(byOp.json.contexts.map((c) => c.school_id).sort(), [ids.a, ids.b].sort());
  const byAdmin = await get(`/api/v1/users/${ids.tina}`, ids.adminToken);
  assert.equal(byAdmin.status, 200);
  assert.deepEqual(byAdmin.json.contexts.map((c) => c.school_id), [ids.a]);
  const self = await get(`/api/v1/users/${ids.tina}`, s.token({ sub: ids.tina, schools: [`${ids.a}:teacher`] }));
  assert.equal(self.json.contexts.length, 2);

  // A user created without contexts by an operator can be placed by a school admin.
  const loose = await user('lisa.neu', 'Lisa', 'Neu');
  const placed = await post(`/api/v1/schools/${ids.a}/people`, { user_id: loose.id, role: 'PUPIL' }, ids.adminToken);
  assert.equal(placed.status, 201, placed.text);
  ids.lisa = loose.id;
});

test('groups are created, listed page by page, and unique per school and year', async () => {
  const t = ids.adminToken;
  const mk = (body) => post(`/api/v1/schools/${ids.a}/groups`, body, t);
  const c5a = await mk({ kind: 'CLASS', name: '5a', school_year: '2026/27' });
  assert.equal(c5a.status, 201, c5a.text);
  assert.equal(c5a.json.school_id, ids.a);
  assert.equal(c5a.json.kind, 'CLASS');
  ids.g5a = c5a.json.id;
  ids.g5b = (await mk({ kind: 'CLASS', name: '5b', school_year: '2026/27' })).json.id;
  ids.choir = (await mk({ kind: 'CLUB', name: 'Chor-AG', school_year: '2026/27' })).json.id;
  ids.staffRoom = (await mk({ kind: 'STAFF_ROOM', name: 'Lehrerzimmer' })).json.id;
  assert.equal((await mk({ kind: 'CLASS', name: '5a', school_year: '2027/28' })).status, 201);

  const dup = await mk({ kind: 'COURSE', name: '5a', school_year: '2026/27' });
  assert.equal(dup.status, 409);
  assert.equal(dup.json.error.code, 'identity.group_name_taken');
  const badYear = await mk({ kind: 'CLASS', name: '6a', school_year: '2026/28' });
  assert.equal(badYear.status, 400);
  assert.equal(badYear.json.error.field, 'school_year');

  const all = await allPages(`/api/v1/schools/${ids.a}/groups`, 'groups', t);
  assert.equal(all.length, 5);
  assert.equal(new Set(all.map((g) => g.id)).size, 5);
  const year = await allPages(`/api/v1/schools/${ids.a}/groups?school_year=2026%2F27`, 'groups', t);
  assert.deepEqual(year.map((g) => g.name).sort(), ['5a', '5b', 'Chor-AG']);
});

test('memberships are added, listed, removed, and each change is published on Redis', async () => {
  assert.ok(s.redisUrl, 'the runner gives a Redis URL');
  const sub = subscribe(s.redisUrl, 'kreide.identity.events');
  await sub.ready;
  try {
    const t = ids.adminToken;
    const add = (group, user_id, role, extra = {}) =>
      post(`/api/v1/groups/${group}/members`, { user_id, role, ...extra }, t);
    const lead = await add(ids.g5a, ids.tina, 'LEADER', { valid_from: '2026-08-01' });
    assert.equal(lead.status, 201, lead.text);
    assert.equal(lead.json.role, 'LEADER');
    assert.equal(lead.json.valid_from, '2026-08-01');
    assert.equal(lead.json.valid_to, '');
    // Replaced by an open-ended leadership, so the class teacher leads it now.
    assert.equal((await api(`${s.url}/api/v1/groups/${ids.g5a}/members/${ids.tina}`, { method: 'DELETE', token: t })).status, 200);
    assert.equal((await add(ids.g5a, ids.tina, 'LEADER')).status, 201);
    assert.equal((await add(ids.g5a, ids.paul)).status, 201);
    assert.equal((await add(ids.g5a, ids.pia, 'MEMBER')).status, 201);
    assert.equal((await add(ids.g5b, ids.lisa)).status, 201);
    assert.equal((await add(ids.staffRoom, ids.tina)).status, 201);
    assert.equal((await add(ids.choir, ids.sam, 'LEADER')).status, 201);

    const twice = await add(ids.g5a, ids.paul);
    assert.equal(twice.status, 409);
    assert.equal(twice.json.error.code, 'identity.already_member');
    const badDates = await add(ids.g5b, ids.pia, 'MEMBER', { valid_from: '2026-09-01', valid_to: '2026-08-01' });
    assert.equal(badDates.status, 400);
    assert.equal(badDates.json.error.field, 'valid_to');
    // Someone without a context at school A cannot join its groups.
    const stranger = await user('bert.fremd', 'Bert', 'Fremd', [{ school_id: ids.b, role: 'PUPIL' }]);
    const noCtx = await add(ids.g5a, stranger.id);
    assert.equal(noCtx.status, 409);
    assert.equal(noCtx.json.error.code, 'identity.no_context');

    const members = await allPages(`/api/v1/groups/${ids.g5a}/members`, 'members', t);
    assert.deepEqual(members.map((m) => m.username).sort(), ['paul.schmidt', 'pia.meyer', 'tina.lehrer']);
    assert.equal(members.find((m) => m.user_id === ids.tina).role, 'LEADER');

    const events = () => sub.messages.map((m) => JSON.parse(m)).filter((e) => e.school_id === ids.a);
    await until(() => events().some((e) => e.type === 'membership.added' && e.group_id === ids.g5a && e.user_id === ids.paul),
      { what: 'membership.added event' });
    const ev = events().find((e) => e.type === 'membership.added' && e.user_id === ids.paul);
    assert.equal(ev.role, 'member');
    assert.match(ev.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    // Removing Pia and adding her back: both are events.
    const del = await api(`${s.url}/api/v1/groups/${ids.g5a}/members/${ids.pia}`, { method: 'DELETE', token: t });
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.json, {});
    const gone = await api(`${s.url}/api/v1/groups/${ids.g5a}/members/${ids.pia}`, { method: 'DELETE', token: t });
    assert.equal(gone.status, 404);
    await until(() => events().some((e) => e.type === 'membership.removed' && e.user_id === ids.pia),
      { what: 'membership.removed event' });
    assert.equal((await add(ids.g5a, ids.pia)).status, 201);
    await until(() => events().filter((e) => e.group_id === ids.g5a && e.user_id === ids.pia).length === 3,
      { what: 'the re-add event' });
    assert.deepEqual(events().filter((e) => e.group_id === ids.g5a && e.user_id === ids.pia).map((e) => e.type),
      ['membership.added', 'membership.removed', 'membership.added']);
  } finally {
    sub.close();
  }
});

test('guardianships link a parent to a pupil of the same school', async () => {
  const t = ids.adminToken;
  const r = await post('/api/v1/guardianships', { school_id: ids.a, parent_id: ids.peter, child_id: ids.paul }, t);
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.parent_id, ids.peter);
  const again = await post('/api/v1/guardianships', { school_id: ids.a, parent_id: ids.peter, child_id: ids.paul }, t);
  assert.equal(again.status, 409);
  // Tina is no parent at school A.
  const wrong = await post('/api/v1/guardianships', { school_id: ids.a, parent_id: ids.tina, child_id: ids.pia }, t);
  assert.equal(wrong.status, 409);
  assert.equal(wrong.json.error.code, 'identity.no_context');
});

test('the directory is searched by name prefix, page by page, with roles', async () => {
  const teacher = s.token({ sub: ids.tina, schools: [`${ids.a}:teacher`] });
  const everyone = await allPages(`/api/v1/schools/${ids.a}/directory`, 'people', teacher);
  assert.deepEqual(everyone.map((p) => p.username).sort(),
    ['alice.admin', 'lisa.neu', 'paul.schmidt', 'peter.schmidt', 'pia.meyer', 'sam.sekretariat', 'tina.lehrer']);
  // Ordered by family name, then given name.
  assert.deepEqual(everyone.map((p) => p.family_name), [...everyone.map((p) => p.family_name)].sort((x, y) => x.localeCompare(y, 'de')));
  assert.deepEqual(everyone.find((p) => p.username === 'sam.sekretariat').roles, ['STAFF']);

  const schmidts = await allPages(`/api/v1/schools/${ids.a}/directory?q=SCHMI`, 'people', teacher, 1);
  assert.deepEqual(schmidts.map((p) => p.given_name).sort(), ['Paul', 'Peter']);
  const byGiven = await get(`/api/v1/schools/${ids.a}/directory?q=pi`, teacher);
  assert.deepEqual(byGiven.json.people.map((p) => p.username), ['pia.meyer']);
  const byUsername = await get(`/api/v1/schools/${ids.a}/directory?q=sam.`, teacher);
  assert.deepEqual(byUsername.json.people.map((p) => p.username), ['sam.sekretariat']);
  assert.deepEqual(byUsername.json.people[0].roles, ['STAFF']);

  // Tina teaches at both schools; each directory shows only its own people.
  const atB = await get(`/api/v1/schools/${ids.b}/directory`, s.token({ sub: ids.tina, schools: [`${ids.b}:teacher`] }));
  assert.equal(atB.status, 200);
  assert.deepEqual(atB.json.people.map((p) => p.username).sort(), ['bert.fremd', 'tina.lehrer']);
  assert.deepEqual(atB.json.people.find((p) => p.username === 'tina.lehrer').roles, ['TEACHER']);
});

test('the OpenAPI document lists the directory routes, DELETE without a body', async () => {
  const doc = (await get('/api/v1/openapi.json')).json;
  const del = doc.paths['/api/v1/groups/{group_id}/members/{user_id}'].delete;
  assert.ok(del);
  assert.equal(del.requestBody, undefined);
  assert.deepEqual(del.parameters.map((p) => p.name).sort(), ['group_id', 'user_id']);
  assert.ok(doc.paths['/api/v1/schools/{school_id}/directory'].get.parameters.some((p) => p.name === 'q'));
  assert.ok(doc.components.schemas['kreide.identity.DirectoryEntry']);
});
