// Tenant isolation and role policy of the directory: nobody reads or changes
// another school's people or groups, pupils and parents see only whom the
// directory rules allow, and every refusal leaves the data as it was.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSuite, api } from '../lib/kreide.mjs';

let s;
let op;
const A = {};
const B = {};
const tok = {};

before(async () => {
  s = await startSuite({ name: 'tenants' });
  op = s.token({ roles: ['operator'] });
  const post = async (path, body) => {
    const r = await api(`${s.url}${path}`, { method: 'POST', token: op, body });
    assert.equal(r.status, 201, `${path}: ${r.text}`);
    return r.json;
  };
  const user = async (username, given, family, school, role) =>
    (await post('/api/v1/users', { username, given_name: given, family_name: family, contexts: [{ school_id: school, role }] })).id;
  const member = (group, user_id, role = 'MEMBER') => post(`/api/v1/groups/${group}/members`, { user_id, role });

  const carrier = await post('/api/v1/carriers', { name: 'Stadt A' });
  A.carrier = carrier.id;
  A.id = (await post('/api/v1/schools', { name: 'Schule A', kind: 'SCHOOL', carrier_id: carrier.id })).id;
  B.id = (await post('/api/v1/schools', { name: 'Schule B', kind: 'SCHOOL' })).id;

  // School A: two classes, a club, teachers, pupils, a parent, staff.
  A.teacher = await user('a.teacher', 'Anna', 'Klassenlehrerin', A.id, 'TEACHER');
  A.teacher2 = await user('a.teacher2', 'Bernd', 'Fachlehrer', A.id, 'TEACHER');
  A.teacher3 = await user('a.teacher3', 'Carla', 'Parallellehrerin', A.id, 'TEACHER');
  A.pupil = await user('a.pupil', 'Emil', 'Erster', A.id, 'PUPIL');
  A.classmate = await user('a.classmate', 'Frieda', 'Zweite', A.id, 'PUPIL');
  A.otherPupil = await user('a.other', 'Gustav', 'Dritter', A.id, 'PUPIL');
  A.parent = await user('a.parent', 'Hanna', 'Erster', A.id, 'PARENT');
  A.otherParent = await user('a.parent2', 'Ida', 'Dritter', A.id, 'PARENT');
  A.staff = await user('a.staff', 'Jens', 'Hausmeister', A.id, 'STAFF');
  A.admin = await user('a.admin', 'Klara', 'Admin', A.id, 'SCHOOL_ADMIN');
  A.class1 = (await post(`/api/v1/schools/${A.id}/groups`, { kind: 'CLASS', name: '1a', school_year: '2026/27' })).id;
  A.class2 = (await post(`/api/v1/schools/${A.id}/groups`, { kind: 'CLASS', name: '1b', school_year: '2026/27' })).id;
  await member(A.class1, A.teacher, 'LEADER');
  await member(A.class1, A.pupil);
  await member(A.class1, A.classmate);
  await member(A.class2, A.teacher3, 'LEADER');
  await member(A.class2, A.otherPupil);
  // Bernd teaches 1a but does not lead it.
  await member(A.class1, A.teacher2);
  await post('/api/v1/guardianships', { school_id: A.id, parent_id: A.parent, child_id: A.pupil });
  await post('/api/v1/guardianships', { school_id: A.id, parent_id: A.otherParent, child_id: A.otherPupil });

  // School B.
  B.teacher = await user('b.teacher', 'Lena', 'Lehrerin', B.id, 'TEACHER');
  B.pupil = await user('b.pupil', 'Max', 'Schüler', B.id, 'PUPIL');
  B.class1 = (await post(`/api/v1/schools/${B.id}/groups`, { kind: 'CLASS', name: '1a', school_year: '2026/27' })).id;
  await member(B.class1, B.teacher, 'LEADER');
  await member(B.class1, B.pupil);

  tok.teacherA = s.token({ sub: A.teacher, schools: [`${A.id}:teacher`] });
  tok.teacher2A = s.token({ sub: A.teacher2, schools: [`${A.id}:teacher`] });
  tok.pupilA = s.token({ sub: A.pupil, schools: [`${A.id}:pupil`] });
  tok.parentA = s.token({ sub: A.parent, schools: [`${A.id}:parent`] });
  tok.adminA = s.token({ sub: A.admin, schools: [`${A.id}:school_admin`] });
  tok.carrierA = s.token({ roles: [`carrier_admin:${A.carrier}`] });
});
after(async () => s && s.stop());

// Everything an operator sees of both schools; compared before and after
// each batch of refused requests.
async function snapshot() {
  const out = {};
  for (const [name, school] of [['A', A.id], ['B', B.id]]) {
    const groups = await api(`${s.url}/api/v1/schools/${school}/groups?page.limit=500`, { token: op });
    const people = await api(`${s.url}/api/v1/schools/${school}/directory?page.limit=500`, { token: op });
    out[name] = { groups: groups.json.groups, people: people.json.people, members: {} };
    for (const g of groups.json.groups) {
      const m = await api(`${s.url}/api/v1/groups/${g.id}/members?page.limit=500`, { token: op });
      out[name].members[g.id] = m.json.members;
    }
  }
  out.guardianOf = (await api(`${s.url}/api/v1/schools/${A.id}/directory?page.limit=500`, { token: tok.parentA })).json.people;
  return out;
}

function refused(r, status, code) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.json.error.code, code, r.text);
  assert.equal(r.json.people, undefined);
  assert.equal(r.json.groups, undefined);
  assert.equal(r.json.members, undefined);
}

const names = (r) => r.json.people.map((p) => p.username).sort();

test('a teacher of school A can neither read, search nor change school B', async () => {
  const before = await snapshot();
  const t = tok.teacherA;
  const call = (method, path, body) => api(`${s.url}${path}`, { method, token: t, body });
  refused(await call('GET', `/api/v1/schools/${B.id}/directory`), 403, 'identity.forbidden');
  refused(await call('GET', `/api/v1/schools/${B.id}/directory?q=m`), 403, 'identity.forbidden');
  refused(await call('GET', `/api/v1/schools/${B.id}/groups`), 403, 'identity.forbidden');
  refused(await call('POST', `/api/v1/schools/${B.id}/groups`, { kind: 'CLASS', name: 'Fremd' }), 403, 'identity.forbidden');
  refused(await call('POST', `/api/v1/schools/${B.id}/people`, { user_id: A.teacher, role: 'TEACHER' }), 403, 'identity.forbidden');
  refused(await call('POST', '/api/v1/guardianships', { school_id: B.id, parent_id: A.parent, child_id: B.pupil }), 403,
    'identity.forbidden');
  // Groups and users of B are addressed by id: for A's teacher they do not exist.
  refused(await call('GET', `/api/v1/groups/${B.class1}/members`), 404, 'identity.not_found');
  refused(await call('POST', `/api/v1/groups/${B.class1}/members`, { user_id: A.pupil }), 404, 'identity.not_found');
  refused(await call('DELETE', `/api/v1/groups/${B.class1}/members/${B.pupil}`), 404, 'identity.not_found');
  refused(await call('GET', `/api/v1/users/${B.pupil}`), 404, 'identity.not_found');
  const missing = await call('GET', '/api/v1/groups/01890000-0000-7000-8000-000000000000/members');
  assert.deepEqual({ ...missing.json.error, request_id: '' },
    { ...(await call('GET', `/api/v1/groups/${B.class1}/members`)).json.error, request_id: '' },
    'a foreign group looks exactly like a missing one');
  // Every role at school A together still gives nothing at school B.
  const forged = s.token({ sub: A.teacher, schools: [`${A.id}:teacher`, `${A.id}:school_admin`] });
  refused(await api(`${s.url}/api/v1/schools/${B.id}/directory`, { token: forged }), 403, 'identity.forbidden');
  // A school admin of A cannot create people at B, nor a carrier admin of A's carrier.
  refused(await api(`${s.url}/api/v1/users`, { method: 'POST', token: tok.adminA,
    body: { username: 'sneaky', given_name: 'S', family_name: 'N', contexts: [{ school_id: B.id, role: 'PUPIL' }] } }),
  403, 'identity.forbidden');
  refused(await api(`${s.url}/api/v1/schools/${B.id}/groups`, { method: 'POST', token: tok.carrierA,
    body: { kind: 'CLASS', name: 'X' } }), 403, 'identity.forbidden');
  // Nor attach B's pupil to A and read them that way.
  refused(await api(`${s.url}/api/v1/schools/${A.id}/people`, { method: 'POST', token: tok.adminA,
    body: { user_id: B.pupil, role: 'PUPIL' } }), 404, 'identity.not_found');
  assert.deepEqual(await snapshot(), before, 'a refused request changed data');
});

test('a caller with no context at a school gets nothing from it', async () => {
  const nobody = s.token({ sub: A.pupil });
  refused(await api(`${s.url}/api/v1/schools/${A.id}/directory`, { token: nobody }), 403, 'identity.forbidden');
  const anonymous = await api(`${s.url}/api/v1/schools/${A.id}/directory`);
  assert.equal(anonymous.status, 401);
});

test('a pupil sees only classmates and the teachers of their groups', async () => {
  const r = await api(`${s.url}/api/v1/schools/${A.id}/directory`, { token: tok.pupilA });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(names(r), ['a.classmate', 'a.pupil', 'a.teacher', 'a.teacher2']);
  const teacher = r.json.people.find((p) => p.username === 'a.teacher');
  assert.deepEqual(teacher.roles, ['TEACHER']);
  // Prefix search stays inside the same view.
  const g = await api(`${s.url}/api/v1/schools/${A.id}/directory?q=g`, { token: tok.pupilA });
  assert.deepEqual(g.json.people, [], 'Gustav of another class is invisible');
  const staff = await api(`${s.url}/api/v1/schools/${A.id}/directory?q=jens`, { token: tok.pupilA });
  assert.deepEqual(staff.json.people, []);
});

test('a parent sees only their children\'s teachers and the staff', async () => {
  const r = await api(`${s.url}/api/v1/schools/${A.id}/directory`, { token: tok.parentA });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(names(r), ['a.staff', 'a.teacher']);
  const other = s.token({ sub: A.otherParent, schools: [`${A.id}:parent`] });
  const r2 = await api(`${s.url}/api/v1/schools/${A.id}/directory`, { token: other });
  assert.deepEqual(names(r2), ['a.staff', 'a.teacher3']);
});

test('pupils and parents cannot list groups, read members or manage anything', async () => {
  const before = await snapshot();
  for (const t of [tok.pupilA, tok.parentA]) {
    const call = (method, path, body) => api(`${s.url}${path}`, { method, token: t, body });
    refused(await call('POST', `/api/v1/schools/${A.id}/groups`, { kind: 'CLUB', name: 'Meine AG' }), 403, 'identity.forbidden');
    refused(await call('GET', `/api/v1/schools/${A.id}/groups`), 403, 'identity.forbidden');
    refused(await call('GET', `/api/v1/groups/${A.class1}/members`), 403, 'identity.forbidden');
    refused(await call('POST', `/api/v1/groups/${A.class1}/members`, { user_id: A.otherPupil }), 403, 'identity.forbidden');
    refused(await call('DELETE', `/api/v1/groups/${A.class1}/members/${A.classmate}`), 403, 'identity.forbidden');
    refused(await call('POST', '/api/v1/users', { username: 'newkid', given_name: 'N', family_name: 'K',
      contexts: [{ school_id: A.id, role: 'PUPIL' }] }), 403, 'identity.forbidden');
    refused(await call('GET', `/api/v1/users/${A.classmate}`), 404, 'identity.not_found');
  }
  assert.deepEqual(await snapshot(), before, 'a refused request changed data');
});

test('a teacher manages members only of groups they lead, and no leaders', async () => {
  const before = await snapshot();
  // Bernd is in 1a but does not lead it; 1b is led by Carla.
  refused(await api(`${s.url}/api/v1/groups/${A.class1}/members`, { method: 'POST', token: tok.teacher2A,
    body: { user_id: A.otherPupil } }), 403, 'identity.forbidden');
  refused(await api(`${s.url}/api/v1/groups/${A.class2}/members`, { method: 'POST', token: tok.teacherA,
    body: { user_id: A.pupil } }), 403, 'identity.forbidden');
  refused(await api(`${s.url}/api/v1/groups/${A.class2}/members/${A.otherPupil}`, { method: 'DELETE', token: tok.teacherA }),
    403, 'identity.forbidden');
  // Anna leads 1a but may not make leaders nor remove one.
  refused(await api(`${s.url}/api/v1/groups/${A.class1}/members`, { method: 'POST', token: tok.teacherA,
    body: { user_id: A.teacher3, role: 'LEADER' } }), 403, 'identity.forbidden');
  refused(await api(`${s.url}/api/v1/groups/${A.class1}/members/${A.teacher}`, { method: 'DELETE', token: tok.teacherA }),
    403, 'identity.forbidden');
  refused(await api(`${s.url}/api/v1/schools/${A.id}/groups`, { method: 'POST', token: tok.teacherA,
    body: { kind: 'COURSE', name: 'Mathe' } }), 403, 'identity.forbidden');
  assert.deepEqual(await snapshot(), before, 'a refused request changed data');

  // What Anna may do: add and remove plain members of 1a.
  const add = await api(`${s.url}/api/v1/groups/${A.class1}/members`, { method: 'POST', token: tok.teacherA,
    body: { user_id: A.otherPupil } });
  assert.equal(add.status, 201, add.text);
  const del = await api(`${s.url}/api/v1/groups/${A.class1}/members/${A.otherPupil}`, { method: 'DELETE', token: tok.teacherA });
  assert.equal(del.status, 200, del.text);
  assert.deepEqual(await snapshot(), before);
});
