// Messaging's refusals: the school's direct-chat policy and room creators,
// rooms that are not the caller's and other schools' rooms (answered like
// ids that do not exist), moderation by members, callers that are not
// people, the internal PurgeBefore, and malformed input of every kind.
// Each refusal is a clear 4xx with a machine-readable code and changes
// nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { api, startSuite } from '../lib/kreide.mjs';
import { client, makeSchool, txnId } from '../lib/messaging.mjs';

let s;
let op;
let c;
let A;
let B;
let room; // group room at A: teacher t1 with p1, p2
let msgOfP1;

before(async () => {
  s = await startSuite({ name: 'msgsecurity' });
  op = s.token({ roles: ['operator'] });
  c = client(s);
  A = await makeSchool(s, op, 'Gymnasium Am See', {
    t1: 'teacher', p1: 'pupil', p2: 'pupil', p3: 'pupil', m1: 'parent', m2: 'parent', ad: 'school_admin',
  });
  B = await makeSchool(s, op, 'Realschule Nord', { tb: 'teacher', pb: 'pupil', adb: 'school_admin' });
  room = await c.room(A.people.t1.token, { school_id: A.id, kind: 'GROUP', name: 'Chemie', member_ids: [A.people.p1.id, A.people.p2.id] });
  msgOfP1 = await c.send(room.id, A.people.p1.token, 'Meine Nachricht');
});
after(async () => s && s.stop());

const P = (alias) => A.people[alias];

function psql(sql) {
  return execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql]).toString().trim();
}

// The state refusals must leave alone.
const snapshot = () => psql(
  'SELECT (SELECT position FROM messaging.log_head) || \'/\' || (SELECT count(*) FROM messaging.rooms) || \'/\' || '
  + '(SELECT count(*) FROM messaging.room_members) || \'/\' || (SELECT count(*) FROM messaging.messages) || \'/\' || '
  + '(SELECT count(*) FROM messaging.reactions) || \'/\' || (SELECT count(*) FROM messaging.reports)');

function refused(r, status, code) {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  if (code) assert.equal(r.json.error.code, code, r.text);
  assert.ok(r.json.error.message.length > 0);
}

test('under the default policy a pupil cannot start a chat with a pupil, nor a parent with a parent', async () => {
  const before = snapshot();
  refused(await c.post('/rooms', P('p1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('p2').id] }), 403, 'messaging.direct_not_allowed');
  refused(await c.post('/rooms', P('m1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('m2').id] }), 403, 'messaging.direct_not_allowed');
  refused(await c.post('/rooms', P('m1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('p1').id] }), 403, 'messaging.direct_not_allowed');
  assert.equal(snapshot(), before);
  // The allowed pairs work, both ways.
  assert.equal((await c.post('/rooms', P('p1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('t1').id] })).status, 201);
  assert.equal((await c.post('/rooms', P('t1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('m1').id] })).status, 201);
});

test('a chat with someone of another school, or nobody, is refused', async () => {
  const before = snapshot();
  refused(await c.post('/rooms', P('t1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [B.people.pb.id] }), 404, 'messaging.person_not_found');
  refused(await c.post('/rooms', P('t1').token, { school_id: A.id, kind: 'DIRECT', member_ids: ['01890000-0000-7000-8000-000000000000'] }), 404, 'messaging.person_not_found');
  refused(await c.post('/rooms', P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'x', member_ids: [P('p1').id, B.people.tb.id] }), 404, 'messaging.person_not_found');
  refused(await c.post('/rooms', P('t1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('t1').id] }), 400, 'messaging.invalid_members');
  // A school the caller holds no role at.
  refused(await c.post('/rooms', P('t1').token, { school_id: B.id, kind: 'GROUP', name: 'Übernahme' }), 403, 'messaging.forbidden');
  assert.equal(snapshot(), before);
});

test('pupils and parents cannot create rooms; roster rooms are never created by hand', async () => {
  const before = snapshot();
  refused(await c.post('/rooms', P('p1').token, { school_id: A.id, kind: 'GROUP', name: 'Geheim' }), 403, 'messaging.create_not_allowed');
  refused(await c.post('/rooms', P('m1').token, { school_id: A.id, kind: 'ANNOUNCEMENT', name: 'Eltern' }), 403, 'messaging.create_not_allowed');
  refused(await c.post('/rooms', P('t1').token, { school_id: A.id, kind: 'ROSTER', name: '1a' }), 400, 'messaging.invalid_kind');
  assert.equal(snapshot(), before);
});

test('a room the caller is not in does not exist for them', async () => {
  const before = snapshot();
  const unknown = '01890000-0000-7000-8000-000000000000';
  for (const id of [room.id, unknown]) {
    refused(await c.get(`/rooms/${id}`, P('p3').token), 404, 'messaging.room_not_found');
    refused(await c.get(`/rooms/${id}/events`, P('p3').token), 404, 'messaging.room_not_found');
    refused(await c.get(`/rooms/${id}/search?q=nachricht`, P('p3').token), 404, 'messaging.room_not_found');
    refused(await c.post(`/rooms/${id}/messages`, P('p3').token, { txn_id: txnId(), text: 'hallo' }), 404, 'messaging.room_not_found');
    refused(await c.post(`/rooms/${id}/read`, P('p3').token, { position: '1' }), 404, 'messaging.room_not_found');
    refused(await c.post(`/rooms/${id}/members`, P('p3').token, { user_ids: [P('p3').id] }), 404, 'messaging.room_not_found');
    refused(await c.post(`/rooms/${id}/typing`, P('p3').token, { typing: true }), 404, 'messaging.room_not_found');
  }
  for (const id of [msgOfP1.id, unknown]) {
    refused(await c.post(`/messages/${id}/reactions`, P('p3').token, { key: '👍' }), 404, 'messaging.message_not_found');
    refused(await c.patch(`/messages/${id}`, P('p3').token, { text: 'x' }), 404, 'messaging.message_not_found');
    refused(await c.del(`/messages/${id}`, P('p3').token), 404, 'messaging.message_not_found');
    refused(await c.post(`/messages/${id}/reports`, P('p3').token, { reason: 'x' }), 404, 'messaging.message_not_found');
    refused(await c.get(`/messages/${id}/receipts`, P('p3').token), 404, 'messaging.message_not_found');
    refused(await c.post(`/messages/${id}/removal`, P('p3').token, {}), 404, 'messaging.message_not_found');
  }
  // The stream across rooms leaves it out too.
  const stream = await c.get('/events?after=0', P('p3').token);
  assert.ok(!stream.json.events.some((e) => e.room_id === room.id));
  assert.equal(snapshot(), before);
});

test('another school\'s rooms are invisible, also to its admins and to a member whose token lacks the school', async () => {
  const before = snapshot();
  for (const who of [B.people.tb, B.people.pb, B.people.adb]) {
    refused(await c.get(`/rooms/${room.id}`, who.token), 404, 'messaging.room_not_found');
    refused(await c.post(`/rooms/${room.id}/lock`, who.token, { locked: true }), 404, 'messaging.room_not_found');
    refused(await c.post(`/messages/${msgOfP1.id}/removal`, who.token, {}), 404, 'messaging.message_not_found');
    assert.ok(!(await c.rooms(who.token)).some((r) => r.school_id === A.id));
    refused(await c.get(`/schools/${A.id}/message-reports`, who.token), 403, 'messaging.forbidden');
    refused(await c.put(`/schools/${A.id}/messaging-policy`, who.token, { preset: 'community' }), 403, 'messaging.forbidden');
  }
  // p1 is in the room, but a token naming only school B does not reach it.
  const onlyB = s.token({ sub: P('p1').id, schools: [`${B.id}:pupil`] });
  refused(await c.get(`/rooms/${room.id}`, onlyB), 404, 'messaging.room_not_found');
  assert.deepEqual(await c.rooms(onlyB), []);
  refused(await c.get(`/rooms?school_id=${A.id}`, onlyB), 403, 'messaging.forbidden');
  assert.equal(snapshot(), before);
});

test('members cannot remove, edit or moderate others\' messages; moderators can', async () => {
  const before = snapshot();
  refused(await c.del(`/messages/${msgOfP1.id}`, P('p2').token), 403, 'messaging.forbidden');
  refused(await c.patch(`/messages/${msgOfP1.id}`, P('p2').token, { text: 'gefälscht' }), 403, 'messaging.forbidden');
  refused(await c.post(`/messages/${msgOfP1.id}/removal`, P('p2').token, {}), 403, 'messaging.forbidden');
  refused(await c.post(`/rooms/${room.id}/members/${P('p1').id}/mute`, P('p2').token, { muted: true }), 403, 'messaging.forbidden');
  refused(await c.post(`/rooms/${room.id}/lock`, P('p2').token, { locked: true }), 403, 'messaging.forbidden');
  refused(await c.post(`/messages/${msgOfP1.id}/pin`, P('p2').token), 403, 'messaging.forbidden');
  refused(await c.del(`/rooms/${room.id}/members/${P('p1').id}`, P('p2').token), 403, 'messaging.forbidden');
  refused(await c.post(`/rooms/${room.id}/members`, P('p2').token, { user_ids: [P('p3').id] }), 403, 'messaging.forbidden');
  refused(await c.put(`/rooms/${room.id}/retention`, P('p2').token, { retention_days: 1 }), 403, 'messaging.forbidden');
  // A moderator cannot be muted, not even by the school's admin.
  refused(await c.post(`/rooms/${room.id}/members/${P('t1').id}/mute`, P('ad').token, { muted: true }), 409, 'messaging.is_moderator');
  assert.equal(snapshot(), before);
  // The room's moderator can.
  const rm = await c.del(`/messages/${msgOfP1.id}`, P('t1').token);
  assert.equal(rm.status, 200, rm.text);
  assert.equal(rm.json.message.removed_by_moderator, true);
});

test('school admins act on reported messages of direct rooms, and only on those', async () => {
  const dm = await c.room(P('t1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('p2').id] });
  const quiet = await c.send(dm.id, P('t1').token, 'privat');
  const loud = await c.send(dm.id, P('t1').token, 'unangemessen');
  // Not in the room, no report: nothing to see.
  refused(await c.post(`/messages/${quiet.id}/removal`, P('ad').token, {}), 404, 'messaging.message_not_found');
  refused(await c.get(`/rooms/${dm.id}`, P('ad').token), 404, 'messaging.room_not_found');
  refused(await c.post(`/rooms/${dm.id}/lock`, P('ad').token, { locked: true }), 404, 'messaging.room_not_found');
  assert.equal((await c.post(`/messages/${loud.id}/reports`, P('p2').token, { reason: 'unangemessen' })).status, 201);
  const reports = await c.get(`/schools/${A.id}/message-reports`, P('ad').token);
  assert.ok(reports.json.reports.some((r) => r.message_id === loud.id));
  const rm = await c.post(`/messages/${loud.id}/removal`, P('ad').token, { reason: 'Meldung' });
  assert.equal(rm.status, 200, rm.text);
  // The other message stays untouched.
  const h = await c.events(dm.id, P('p2').token, '?messages_only=true');
  assert.equal(h.events.find((e) => e.id === quiet.id).message.text, 'privat');
});

test('callers that are not people, and unsealed or unprivileged PurgeBefore calls, are refused', async () => {
  const before = snapshot();
  // An integrator's service token (client_credentials) holds no place in rooms.
  const reg = await api(`${s.url}/api/v1/oidc/clients`, {
    method: 'POST', token: op, body: { name: 'Schulwebsite', type: 'CONFIDENTIAL', grant_types: ['client_credentials'], scopes: ['news'] },
  });
  assert.equal(reg.status, 201, reg.text);
  const tok = await api(`${s.url}/oidc/token`, {
    method: 'POST', raw: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${reg.json.client_id}:${reg.json.client_secret}`).toString('base64')}`,
    },
  });
  assert.equal(tok.status, 200, tok.text);
  refused(await api(`${s.url}/api/v1/rooms`, { token: tok.json.access_token }), 401, 'messaging.person_required');
  refused(await api(`${s.url}/api/v1/rooms/${room.id}/messages`, { method: 'POST', token: tok.json.access_token, body: { txn_id: 'svc1', text: 'Hallo' } }),
    401, 'messaging.person_required');
  const anon = s.rpc('kreide.messaging.Messaging/ListRooms', '{}', { url: s.messagingUrl });
  assert.equal(anon.status, 'UNAUTHENTICATED');
  assert.equal(anon.error_code, 'messaging.person_required');
  // PurgeBefore has no route and needs the operator role inside a sealed envelope.
  const cutoff = new Date().toISOString();
  refused(await api(`${s.url}/api/v1/rooms/${room.id}/purge`, { method: 'POST', token: op, body: {} }), 404, 'api.not_found');
  const noRole = s.rpc('kreide.messaging.Messaging/PurgeBefore', JSON.stringify({ school_id: A.id, before: cutoff }), { url: s.messagingUrl });
  assert.equal(noRole.status, 'PERMISSION_DENIED');
  const unsealed = s.rpc('kreide.messaging.Messaging/PurgeBefore', JSON.stringify({ school_id: A.id, before: cutoff }), { url: s.messagingUrl, roles: ['operator'], seal: false });
  assert.notEqual(unsealed.status, 'OK');
  const badTime = s.rpc('kreide.messaging.Messaging/PurgeBefore', JSON.stringify({ school_id: A.id, before: 'gestern' }), { url: s.messagingUrl, roles: ['operator'] });
  assert.equal(badTime.status, 'INVALID_ARGUMENT');
  const future = s.rpc('kreide.messaging.Messaging/PurgeBefore', JSON.stringify({ school_id: A.id, before: '2999-01-01T00:00:00Z' }), { url: s.messagingUrl, roles: ['operator'] });
  assert.equal(future.status, 'INVALID_ARGUMENT');
  const otherRoom = s.rpc('kreide.messaging.Messaging/PurgeBefore', JSON.stringify({ school_id: B.id, room_id: room.id, before: cutoff }), { url: s.messagingUrl, roles: ['operator'] });
  assert.equal(otherRoom.status, 'NOT_FOUND');
  assert.equal(snapshot(), before);
});

test('malformed input is refused with the field and a clear code, and changes nothing', async () => {
  const before = snapshot();
  const t = P('t1').token;
  const send = (body) => c.post(`/rooms/${room.id}/messages`, t, { txn_id: txnId(), ...body });
  const cases = [
    [await send({ text: '<script>alert(1)</script>' }), 400, 'messaging.text_html', 'text'],
    [await send({ text: 'Hallo <b>fett</b>' }), 400, 'messaging.text_html', 'text'],
    [await send({ text: '[klick](javascript:alert(1))' }), 400, 'messaging.text_link', 'text'],
    [await send({ text: '![x](https://tracker.example/p.gif)' }), 400, 'messaging.text_image', 'text'],
    [await send({ text: '' }), 400, 'messaging.text_empty', 'text'],
    [await send({ text: '   ' }), 400, 'messaging.text_empty', 'text'],
    [await send({ text: 'x'.repeat(8001) }), 400, 'messaging.text_too_long', 'text'],
    [await send({ text: 'a\u0000b' }), 400, 'request.malformed_json', null],
    [await send({ text: 'bell\u0007' }), 400, 'messaging.text_invalid', 'text'],
    [await c.post(`/rooms/${room.id}/messages`, t, { text: 'ohne txn' }), 400, 'messaging.invalid_txn_id', 'txn_id'],
    [await c.post(`/rooms/${room.id}/messages`, t, { txn_id: 'mit leerzeichen', text: 'x' }), 400, 'messaging.invalid_txn_id', 'txn_id'],
    [await send({ text: 'x', reply_to: 'nope' }), 400, 'messaging.invalid_id', 'reply_to'],
    [await send({ text: 'x', reply_to: '01890000-0000-7000-8000-000000000000' }), 404, 'messaging.message_not_found', 'reply_to'],
    [await send({ text: 'x', mentions: [P('p3').id] }), 400, 'messaging.invalid_mention', 'mentions'],
    [await send({ text: 'x', mentions: ['x'] }), 400, 'messaging.invalid_id', 'mentions[0]'],
    [await send({ text: 'x', mentions: Array.from({ length: 51 }, () => P('p1').id) }), 400, 'messaging.too_many', 'mentions'],
    [await send({ text: 'x', attachments: [{ file_id: 'x', name: 'a', media_type: 'text/plain' }] }), 400, 'messaging.invalid_id', 'attachments[0].file_id'],
    [await send({ text: 'x', attachments: [{ file_id: '01890000-0000-7000-8000-000000000000', name: '../a', media_type: 'text/plain' }] }), 400, 'messaging.invalid_attachment', 'attachments[0].name'],
    [await send({ text: 'x', attachments: [{ file_id: '01890000-0000-7000-8000-000000000000', name: 'a', media_type: 'text/html; x=1' }] }), 400, 'messaging.invalid_attachment', 'attachments[0].media_type'],
    [await send({ text: 'x', attachments: Array.from({ length: 11 }, () => ({ file_id: '01890000-0000-7000-8000-000000000000', name: 'a', media_type: 'text/plain' })) }), 400, 'messaging.too_many', 'attachments'],
    [await send({ text: 7 }), 400, 'request.invalid', 'text'],
    [await c.post(`/rooms/not-a-uuid/messages`, t, { txn_id: txnId(), text: 'x' }), 400, 'messaging.invalid_id', 'room_id'],
    [await c.post(`/messages/${msgOfP1.id}/reactions`, t, { key: 'zwei wörter' }), 400, 'messaging.invalid_reaction', 'key'],
    [await c.post(`/messages/${msgOfP1.id}/reactions`, t, { key: '' }), 400, 'messaging.invalid_reaction', 'key'],
    [await c.post(`/rooms/${room.id}/read`, t, { position: '-1' }), 400, 'messaging.invalid_position', 'position'],
    [await c.get(`/rooms/${room.id}/events?limit=501`, t), 400, 'messaging.invalid_limit', 'limit'],
    [await c.get(`/rooms/${room.id}/events?after=5&before=3`, t), 400, 'messaging.invalid_position', 'before'],
    [await c.get('/events?before=3', t), 400, 'messaging.invalid_position', 'before'],
    [await c.get(`/rooms/${room.id}/events?after=abc`, t), 400, 'request.invalid', 'after'],
    [await c.get(`/rooms/${room.id}/search?q=${encodeURIComponent('&|!')}`, t), 400, 'messaging.invalid_query', 'q'],
    [await c.get('/rooms?page.cursor=garbage', t), 400, 'messaging.invalid_cursor', 'page.cursor'],
    [await c.get('/rooms?page.limit=1000', t), 400, 'messaging.invalid_limit', 'page.limit'],
    [await c.post('/rooms', t, { school_id: A.id, kind: 'GROUP', name: '' }), 400, 'messaging.invalid_text', 'name'],
    [await c.post('/rooms', t, { school_id: A.id, kind: 'GROUP', name: 'Zeile\nZwei' }), 400, 'messaging.invalid_text', 'name'],
    [await c.post('/rooms', t, { school_id: A.id, kind: 'GROUP', name: 'x', topic: 'y'.repeat(1001) }), 400, 'messaging.invalid_text', 'topic'],
    [await c.post('/rooms', t, { school_id: A.id, kind: 'GROUP', name: 'x', member_ids: Array.from({ length: 101 }, () => P('p1').id) }), 400, 'messaging.too_many', 'member_ids'],
    [await c.post('/rooms', t, { school_id: 'x', kind: 'GROUP', name: 'x' }), 400, 'messaging.invalid_id', 'school_id'],
    [await c.post('/rooms', t, { school_id: A.id, kind: 'GROUP', name: 'x', group_id: '01890000-0000-7000-8000-000000000000' }), 400, 'messaging.invalid_room', 'group_id'],
    [await c.post(`/rooms/${room.id}/polls`, t, { txn_id: txnId(), question: 'Eine Option?', options: ['nur eine'] }), 400, 'messaging.invalid_poll', 'options'],
    [await c.post(`/rooms/${room.id}/polls`, t, { txn_id: txnId(), question: 'Doppelt?', options: ['a', 'a'] }), 400, 'messaging.invalid_poll', 'options[1]'],
    [await c.post(`/rooms/${room.id}/polls`, t, { txn_id: txnId(), question: 'Gestern?', options: ['a', 'b'], closes_at: '2020-01-01T00:00:00Z' }), 400, 'messaging.invalid_time', 'closes_at'],
    [await c.post(`/rooms/${room.id}/polls`, t, { txn_id: txnId(), question: '<i>x</i>', options: ['a', 'b'] }), 400, 'messaging.text_html', 'question'],
    [await c.put(`/rooms/${room.id}/retention`, t, { retention_days: 4000 }), 400, 'messaging.invalid_retention', 'retention_days'],
    [await c.put(`/schools/${A.id}/messaging-policy`, P('ad').token, { preset: 'castle' }), 400, 'messaging.invalid_preset', 'preset'],
    [await c.put(`/schools/${A.id}/messaging-policy`, P('ad').token, { direct_rules: [{ from: 'pupil', to: 'king' }], set_direct_rules: true }), 400, 'messaging.invalid_role', 'direct_rules[0]'],
    [await c.put(`/schools/${A.id}/messaging-policy`, P('ad').token, { room_creators: ['pupil'] }), 400, 'messaging.invalid_policy', 'set_room_creators'],
    [await c.put(`/schools/${A.id}/messaging-policy`, P('t1').token, { preset: 'community' }), 403, 'messaging.forbidden', null],
    [await c.post(`/messages/${msgOfP1.id}/reports`, P('p2').token, { reason: '' }), 400, 'messaging.invalid_reason', 'reason'],
  ];
  for (const [r, status, code, field] of cases) {
    refused(r, status, code);
    if (field) assert.equal(r.json.error.field, field, r.text);
  }
  // A vote out of range, or several on a single-choice poll.
  const poll = await c.post(`/rooms/${room.id}/polls`, t, { txn_id: txnId(), question: 'Ja oder nein?', options: ['ja', 'nein'] });
  assert.equal(poll.status, 201, poll.text);
  const after = snapshot();
  refused(await c.post(`/polls/${poll.json.message.id}/votes`, P('p1').token, { options: [2] }), 400, 'messaging.invalid_vote');
  refused(await c.post(`/polls/${poll.json.message.id}/votes`, P('p1').token, { options: [0, 1] }), 400, 'messaging.invalid_vote');
  refused(await c.post(`/polls/${msgOfP1.id}/votes`, P('p1').token, { options: [0] }), 404, 'messaging.poll_not_found');
  assert.equal(snapshot(), after);
  // Nothing but that poll was stored.
  const [pos, rooms, members, msgs] = before.split('/').map(Number);
  const [pos2, rooms2, members2, msgs2] = after.split('/').map(Number);
  assert.equal(pos2, pos + 1);
  assert.deepEqual([rooms2, members2, msgs2], [rooms, members, msgs + 1]);
  assert.equal((await api(`${s.url}/readyz`)).status, 200, 'the daemons keep serving');
});
