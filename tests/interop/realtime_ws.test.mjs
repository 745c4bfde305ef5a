// Realtime delivery with the npm `ws` client (docs/realtime.md): two
// gateway processes share one Redis; people connected to either receive
// every event of their rooms, in order and once; a reconnect with `after`
// replays exactly what was missed; retried sends with one txn_id make one
// message; identity's roster changes add and remove class-room members,
// whose sockets see it happen.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { api, startSuite, until } from '../lib/kreide.mjs';
import { client, makeSchool, txnId } from '../lib/messaging.mjs';
import { connect } from '../lib/realtime.mjs';

let s;
let c;
let A;
let room;
const open = [];
const P = (alias) => A.people[alias];

async function sock(gw, alias, opts = {}) {
  const k = await connect(s.gateways[gw].url, { token: P(alias).token, ...opts });
  open.push(k);
  await k.ready();
  return k;
}

// The message texts of a socket's events in `roomId`, in arrival order.
const texts = (k, roomId) => k.events().filter((e) => e.room_id === roomId && e.kind === 'MESSAGE').map((e) => e.message.text);

function assertIncreasing(k) {
  const pos = k.events().map((e) => BigInt(e.position));
  for (let i = 1; i < pos.length; i++) assert.ok(pos[i] > pos[i - 1], `positions ${pos[i - 1]} then ${pos[i]}`);
}

before(async () => {
  s = await startSuite({ name: 'realtime', gateways: 2 });
  const op = s.token({ roles: ['operator'] });
  c = client(s);
  A = await makeSchool(s, op, 'Gesamtschule Hafen', {
    t1: 'teacher', p1: 'pupil', p2: 'pupil', p3: 'pupil', m1: 'parent', ad: 'school_admin',
  });
  room = await c.room(P('t1').token, {
    school_id: A.id, kind: 'GROUP', name: 'Klassenfahrt', member_ids: [P('p1').id, P('p2').id, P('m1').id],
  });
});

after(async () => {
  for (const k of open) if (!k.closed) k.ws.terminate();
  if (s) await s.stop();
});

test('members on both gateways get every message of the room, in the same order, once', async () => {
  const socks = [await sock(0, 't1'), await sock(1, 'p1'), await sock(0, 'p2'), await sock(1, 'm1')];
  const outsider = await sock(1, 'p3');
  // Three senders at once, over HTTP and over the socket.
  const sent = [];
  const jobs = [];
  for (let i = 0; i < 10; i++) {
    jobs.push(c.send(room.id, P('t1').token, `http t1 ${i}`).then(() => sent.push(`http t1 ${i}`)));
    jobs.push(c.send(room.id, P('p2').token, `http p2 ${i}`).then(() => sent.push(`http p2 ${i}`)));
    jobs.push(socks[1].call({ type: 'send', room_id: room.id, txn_id: txnId(), text: `ws p1 ${i}` }).then((r) => {
      assert.equal(r.status, 201, JSON.stringify(r));
      assert.equal(r.body.kind, 'MESSAGE');
      sent.push(`ws p1 ${i}`);
    }));
  }
  await Promise.all(jobs);
  for (const k of socks) await k.waitFor((x) => texts(x, room.id).length >= 30, { what: '30 messages' });
  const first = texts(socks[0], room.id);
  assert.deepEqual([...first].sort(), [...sent].sort());
  for (const k of socks) {
    assert.deepEqual(texts(k, room.id), first, 'every member sees the same order');
    assertIncreasing(k);
  }
  // The order is the log's: the room's history lists the same sequence.
  const hist = await c.events(room.id, P('t1').token, '?messages_only=true&limit=100');
  assert.deepEqual(hist.events.map((e) => e.message.text).filter((t) => sent.includes(t)), first);
  // Someone outside the room heard nothing of it.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(outsider.events().filter((e) => e.room_id === room.id).length, 0);
});

test('edits, reactions, receipts and typing reach the members live', async () => {
  const t1 = await sock(0, 't1');
  const p1 = await sock(1, 'p1');
  const m = await c.send(room.id, P('p1').token, 'Wann fahren wir los?');
  await t1.waitFor((x) => x.events().find((e) => e.id === m.id), { what: 'the message' });
  const edit = await c.patch(`/messages/${m.id}`, P('p1').token, { text: 'Wann fahren wir morgen los?' });
  assert.equal(edit.status, 200, edit.text);
  const ev = await t1.waitFor((x) => x.events().find((e) => e.kind === 'MESSAGE_EDITED' && e.message_id === m.id), { what: 'the edit' });
  assert.equal(ev.message.text, 'Wann fahren wir morgen los?');
  assert.equal(ev.message.edited, true);
  const react = await c.post(`/messages/${m.id}/reactions`, P('t1').token, { key: '👍' });
  assert.equal(react.status, 200, react.text);
  const r = await p1.waitFor((x) => x.events().find((e) => e.kind === 'REACTION_ADDED' && e.message_id === m.id), { what: 'the reaction' });
  assert.equal(r.reaction_key, '👍');
  assert.equal(r.sender_id, P('t1').id);
  const read = await t1.call({ type: 'read', room_id: room.id, position: m.position });
  assert.equal(read.status, 200, JSON.stringify(read));
  await p1.waitFor((x) => x.events().find((e) => e.kind === 'RECEIPT' && e.sender_id === P('t1').id), { what: 'the receipt' });
  p1.send({ type: 'typing', room_id: room.id, typing: true });
  const typing = await t1.waitFor((x) => x.frames.find((f) => f.type === 'typing'), { what: 'typing' });
  assert.equal(typing.user_id, P('p1').id);
  assert.equal(typing.room_id, room.id);
  assert.equal(typing.typing, true);
  // Not echoed to the typist.
  await new Promise((res) => setTimeout(res, 200));
  assert.equal(p1.frames.filter((f) => f.type === 'typing').length, 0);
});

test('a reconnect with after replays exactly what was missed, then goes live', async () => {
  const p2 = await sock(1, 'p2');
  await c.send(room.id, P('t1').token, 'vor der Pause');
  await p2.waitFor((x) => texts(x, room.id).includes('vor der Pause'));
  const resume = p2.position();
  await p2.close();
  const missed = [];
  for (let i = 0; i < 12; i++) {
    missed.push(`verpasst ${i}`);
    await c.send(room.id, P('t1').token, `verpasst ${i}`);
  }
  const again = await connect(s.gateways[0].url, { token: P('p2').token, after: resume });
  open.push(again);
  // Messages sent while the replay runs arrive after it, without repeats.
  const during = c.send(room.id, P('m1').token, 'während des Wiederholens');
  await again.ready();
  await during;
  await again.waitFor((x) => texts(x, room.id).includes('während des Wiederholens'), { what: 'the live message' });
  const got = texts(again, room.id);
  assert.deepEqual(got.slice(0, 12), missed);
  assert.deepEqual(got.slice(12), ['während des Wiederholens']);
  assertIncreasing(again);
  const ids = again.events().map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, 'no event twice');
  assert.ok(!again.events().some((e) => BigInt(e.position) <= BigInt(resume)), 'nothing from before `after`');
  // `ready` says where the replay ended.
  const ready = again.frames.find((f) => f.type === 'ready');
  const readyAt = again.frames.indexOf(ready);
  assert.ok(again.frames.slice(0, readyAt).filter((f) => f.type === 'event').length >= 12);
});

test('retried sends with one txn_id make one message, over the socket and HTTP alike', async () => {
  const p1 = await sock(0, 'p1');
  const watcher = await sock(1, 't1');
  const txn = txnId();
  const replies = await Promise.all([1, 2, 3].map(() => p1.call({ type: 'send', room_id: room.id, txn_id: txn, text: 'nur einmal' })));
  const http = await c.post(`/rooms/${room.id}/messages`, P('p1').token, { txn_id: txn, text: 'nur einmal' });
  assert.equal(http.status, 201, http.text);
  for (const r of replies) {
    assert.equal(r.status, 201, JSON.stringify(r));
    assert.equal(r.body.id, http.json.id);
  }
  await watcher.waitFor((x) => texts(x, room.id).includes('nur einmal'));
  await c.send(room.id, P('t1').token, 'danach');
  await watcher.waitFor((x) => texts(x, room.id).includes('danach'));
  assert.equal(texts(watcher, room.id).filter((t) => t === 'nur einmal').length, 1);
  const hist = await c.events(room.id, P('t1').token, '?messages_only=true&limit=200');
  assert.equal(hist.events.filter((e) => e.message.text === 'nur einmal').length, 1);
  // A malformed send is answered, and the socket stays usable.
  const bad = await p1.call({ type: 'send', room_id: room.id, txn_id: 'nicht erlaubt!', text: 'x' });
  assert.equal(bad.status, 400, JSON.stringify(bad));
  assert.equal(bad.error.code, 'messaging.invalid_txn_id');
  const unknown = await p1.call({ type: 'shout' });
  assert.equal(unknown.status, 400);
  assert.equal(unknown.error.code, 'ws.bad_frame');
  const pong = await p1.call({ type: 'ping' });
  assert.equal(pong.type, 'pong');
});

test('roster changes in identity add and remove class-room members, live on their sockets', async () => {
  const ad = P('ad').token;
  const g = await api(`${s.url}/api/v1/schools/${A.id}/groups`, { method: 'POST', token: ad, body: { kind: 'CLASS', name: '7c', school_year: '2026/27' } });
  assert.equal(g.status, 201, g.text);
  const add = (alias, role = 'MEMBER') => api(`${s.url}/api/v1/groups/${g.json.id}/members`, { method: 'POST', token: ad, body: { user_id: P(alias).id, role } });
  assert.equal((await add('t1', 'LEADER')).status, 201);
  const classRoom = await until(async () => (await c.rooms(P('t1').token)).find((r) => r.group_id === g.json.id), { what: 'the class room' });
  const p3 = await sock(1, 'p3');
  const t1 = await sock(0, 't1');
  assert.equal((await add('p3')).status, 201);
  // The pupil's socket hears of their own joining and then the room's messages.
  const joined = await p3.waitFor((x) => x.events().find((e) => e.room_id === classRoom.id && e.kind === 'MEMBER_JOINED' && e.user_id === P('p3').id), { what: 'the join' });
  assert.equal(joined.sender_id, '');
  await t1.waitFor((x) => x.events().find((e) => e.room_id === classRoom.id && e.kind === 'MEMBER_JOINED' && e.user_id === P('p3').id), { what: 'the join, seen by the teacher' });
  await c.send(classRoom.id, P('t1').token, 'Willkommen in der 7c');
  await p3.waitFor((x) => texts(x, classRoom.id).includes('Willkommen in der 7c'));
  // Removed from the group: told so, and nothing after it.
  const rm = await api(`${s.url}/api/v1/groups/${g.json.id}/members/${P('p3').id}`, { method: 'DELETE', token: ad });
  assert.ok(rm.status === 200 || rm.status === 204, rm.text);
  await p3.waitFor((x) => x.events().find((e) => e.room_id === classRoom.id && e.kind === 'MEMBER_LEFT' && e.user_id === P('p3').id), { what: 'the leave' });
  await c.send(classRoom.id, P('t1').token, 'nach dem Wechsel');
  await t1.waitFor((x) => texts(x, classRoom.id).includes('nach dem Wechsel'));
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(!texts(p3, classRoom.id).includes('nach dem Wechsel'));
});

// Last in this file: it moves the loops' expected position far ahead.
test('an announcement that never comes is given up after KREIDE_WS_GAP_MS: the sockets are told to re-read', async () => {
  const p1 = await sock(0, 'p1');
  const t1 = await sock(0, 't1');
  const head = BigInt((await c.send(room.id, P('t1').token, 'vor der Lücke')).position);
  await p1.waitFor((x) => texts(x, room.id).includes('vor der Lücke'));
  await t1.waitFor((x) => texts(x, room.id).includes('vor der Lücke'));
  // An event two positions on, as if the one between was announced and lost.
  const ahead = (head + 2n).toString();
  const announcement = {
    created_at: new Date().toISOString(), event_id: '01a2a000-0000-7000-8000-00000000abcd', kind: 'message',
    members: [P('p1').id], position: ahead, room_id: room.id, school_id: A.id, sender_id: P('t1').id,
    event: { position: ahead, id: '01a2a000-0000-7000-8000-00000000abcd', room_id: room.id, kind: 'MESSAGE', message: { text: 'nach der Lücke' } },
  };
  execFileSync('redis-cli', ['-u', s.redisUrl, 'PUBLISH', 'kreide.messaging.events', JSON.stringify(announcement)]);
  // Held while the loop waits for head+1, then handed on with a gap notice
  // to every socket, carrying where each one was.
  const started = Date.now();
  const gap = await p1.waitFor((x) => x.frames.find((f) => f.type === 'gap'), { what: 'the gap notice' });
  assert.ok(Date.now() - started >= 1500, 'the loop waited for the missing position');
  assert.equal(gap.after, head.toString());
  assert.equal((await t1.waitFor((x) => x.frames.find((f) => f.type === 'gap'), { what: 'the gap notice' })).after, head.toString());
  await p1.waitFor((x) => x.events().find((e) => e.position === ahead), { what: 'the held event' });
  // What the notice asks for: the stream after `after` over HTTP.
  const re = await c.get(`/events?after=${gap.after}`, P('p1').token);
  assert.equal(re.status, 200, re.text);
});
