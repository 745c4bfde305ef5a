// The realtime socket's gate (docs/realtime.md): who may open one, from
// where, and that a socket only ever carries its owner's rooms — never
// another room's, never another school's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, startSuite } from '../lib/kreide.mjs';
import { client, makeSchool } from '../lib/messaging.mjs';
import { connect } from '../lib/realtime.mjs';

let s;
let c;
let A;
let B;
const open = [];
const PASSWORD = 'ein langer satz für die schule';

async function refused(opts, status, code) {
  const e = await connect(s.url, opts).then((k) => { open.push(k); return null; }, (err) => err);
  assert.ok(e, 'the upgrade must be refused');
  assert.equal(e.status, status, e.message);
  if (code) assert.equal(e.json?.error?.code, code, e.message);
  return e;
}

async function sock(person, opts = {}) {
  const k = await connect(s.url, { token: person.token, ...opts });
  open.push(k);
  await k.ready();
  return k;
}

before(async () => {
  s = await startSuite({ name: 'realtimesec' });
  const op = s.token({ roles: ['operator'] });
  c = client(s);
  A = await makeSchool(s, op, 'Grundschule Am Bach', { t1: 'teacher', p1: 'pupil', p2: 'pupil' });
  B = await makeSchool(s, op, 'Kita Sonnenschein', { e1: 'teacher', m1: 'parent' }, 'KITA');
});

after(async () => {
  for (const k of open) if (!k.closed) k.ws.terminate();
  if (s) await s.stop();
});

test('no credential or a bad one is refused before the upgrade', async () => {
  await refused({}, 401, 'auth.required');
  await refused({ token: 'not.a.token' }, 401, 'auth.invalid_token');
  await refused({ headers: { Authorization: 'Basic dXNlcjpwdw==' } }, 401, 'auth.invalid_token');
  await refused({ protocols: ['kreide.v1', 'kreide.bearer.garbage'] }, 401, 'auth.invalid_token');
  await refused({ token: A.people.p1.token, after: 'zwölf' }, 400, 'ws.bad_after');
  await refused({ token: A.people.p1.token, after: '-1' }, 400, 'ws.bad_after');
  // A plain GET is told what the endpoint is.
  const plain = await api(`${s.url}/api/v1/ws`, { token: A.people.p1.token });
  assert.equal(plain.status, 400);
  assert.equal(plain.json.error.code, 'ws.not_websocket');
});

test('browsers pass the token as a subprotocol and get kreide.v1 back', async () => {
  const k = await connect(s.url, { protocols: ['kreide.v1', `kreide.bearer.${A.people.p1.token}`] });
  open.push(k);
  assert.equal(k.ws.protocol, 'kreide.v1');
  await k.ready();
  await k.close();
});

test('the sign-in cookie opens a socket only from the site itself', async () => {
  // A person with a password and a real single sign-on session.
  const p = A.people.p2;
  const code = await api(`${s.url}/api/v1/users/${p.id}/codes`, { method: 'POST', token: s.token({ roles: ['operator'] }), body: { school_id: A.id, purpose: 'ENROLLMENT' } });
  assert.equal(code.status, 201, code.text);
  const e = await api(`${s.url}/api/v1/enroll`, { method: 'POST', body: { username: p.username, code: code.json.code, password: PASSWORD } });
  assert.equal(e.status, 200, e.text);
  const started = s.rpc('kreide.identity.Identity/StartSession',
    JSON.stringify({ username: p.username, password: PASSWORD, client_address: '127.0.0.1' }), { service: 'gateway' });
  assert.equal(started.status, 'OK', JSON.stringify(started));
  const cookie = `kreide_sso=${started.body.session_token}`;

  await refused({ headers: { Cookie: cookie }, origin: 'https://evil.example' }, 403, 'ws.origin');
  await refused({ headers: { Cookie: cookie } }, 403, 'ws.origin');
  await refused({ headers: { Cookie: 'kreide_sso=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }, origin: s.url }, 401, 'auth.session_ended');

  const k = await connect(s.url, { headers: { Cookie: cookie }, origin: s.url });
  open.push(k);
  await k.ready();
  // The socket speaks for that person, with their school.
  const room = await c.room(A.people.t1.token, { school_id: A.id, kind: 'GROUP', name: 'Lesegruppe', member_ids: [p.id] });
  await c.send(room.id, A.people.t1.token, 'Lesen um 10');
  await k.waitFor((x) => x.events().find((ev) => ev.kind === 'MESSAGE' && ev.room_id === room.id), { what: 'the message' });
  const sent = await k.call({ type: 'send', room_id: room.id, txn_id: 'cookie-1', text: 'Ich komme' });
  assert.equal(sent.status, 201, JSON.stringify(sent));
  assert.equal(sent.body.sender_id, p.id);
  await k.close();
});

test('a socket carries only its owner\'s rooms: not other rooms, not other schools', async () => {
  const t1 = await sock(A.people.t1);
  const p2 = await sock(A.people.p2);
  const kita = await sock(B.people.e1);
  const m1 = await sock(B.people.m1);
  const roomA = await c.room(A.people.t1.token, { school_id: A.id, kind: 'GROUP', name: 'Nur p1', member_ids: [A.people.p1.id] });
  const roomB = await c.room(B.people.e1.token, { school_id: B.id, kind: 'GROUP', name: 'Elternrat', member_ids: [B.people.m1.id] });
  await c.send(roomA.id, A.people.t1.token, 'geheim A');
  await c.send(roomB.id, B.people.e1.token, 'geheim B');
  await t1.waitFor((x) => x.events().find((e) => e.room_id === roomA.id && e.kind === 'MESSAGE'));
  await m1.waitFor((x) => x.events().find((e) => e.room_id === roomB.id && e.kind === 'MESSAGE'));
  await new Promise((r) => setTimeout(r, 300));
  const rooms = (k) => new Set(k.events().map((e) => e.room_id));
  assert.ok(!rooms(p2).has(roomA.id), 'a pupil of the school outside the room hears nothing of it');
  assert.ok(!rooms(p2).has(roomB.id) && !rooms(t1).has(roomB.id), 'school A hears nothing of the Kita');
  assert.ok(!rooms(kita).has(roomA.id) && !rooms(m1).has(roomA.id), 'the Kita hears nothing of school A');
  // Sending into a room one is not in is refused like over HTTP.
  const r = await p2.call({ type: 'send', room_id: roomA.id, txn_id: 'sneak-1', text: 'hallo?' });
  assert.equal(r.status, 404, JSON.stringify(r));
  const other = await m1.call({ type: 'send', room_id: roomA.id, txn_id: 'sneak-2', text: 'hallo?' });
  assert.equal(other.status, 404, JSON.stringify(other));
  // Replaying from the start gives a person only their own history.
  const replay = await sock(A.people.p2, { after: '0' });
  assert.ok(!replay.events().some((e) => e.room_id === roomA.id || e.room_id === roomB.id));
});

test('an expired token ends its socket with 4001; binary and oversized frames end theirs', async () => {
  const short = s.token({ sub: A.people.p1.id, schools: [`${A.id}:pupil`], ttl: 2 });
  const k = await sock({ token: short });
  const closed = await k.waitClosed(15000);
  assert.equal(closed.code, 4001);

  const b = await sock(A.people.p1);
  b.ws.send(Buffer.from([1, 2, 3]));
  assert.equal((await b.waitClosed()).code, 1003);

  const big = await sock(A.people.p1);
  big.send({ type: 'send', text: 'x'.repeat(70 * 1024) });
  assert.equal((await big.waitClosed()).code, 1009);
});
