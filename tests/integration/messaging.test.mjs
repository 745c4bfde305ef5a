// Messaging through the JSON API: rooms, sending (idempotent), edits and
// tombstones, reactions, receipts and "read by N of M", polls, history
// cursors both ways and the stream across rooms, search, unread counts,
// pins, moderation, retention and purging, the events announced on Redis,
// and roster rooms that follow identity's groups, healed by reconciliation
// when an event was missed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { api, startSuite, subscribe, until } from '../lib/kreide.mjs';
import { client, makeSchool, txnId } from '../lib/messaging.mjs';

let s;
let op;
let c;
let A; // a school: people below
let room; // a group room of teacher t1 with p1, p2, m1

before(async () => {
  // Reconciliation and the retention sweep every 2 s, so that missed roster
  // events heal and expired history goes within the test.
  s = await startSuite({ name: 'messaging', env: { KREIDE_MESSAGING_RECONCILE_S: '2', KREIDE_MESSAGING_SWEEP_S: '2' } });
  op = s.token({ roles: ['operator'] });
  c = client(s);
  A = await makeSchool(s, op, 'Grundschule Lindenweg', {
    t1: 'teacher', t2: 'teacher', p1: 'pupil', p2: 'pupil', p3: 'pupil', m1: 'parent', ad: 'school_admin',
  });
});
after(async () => s && s.stop());

const P = (alias) => A.people[alias];

// Every event of a person's stream, page by page.
async function wholeStream(token) {
  const all = [];
  let after = '0';
  for (let pages = 0; pages < 100; pages++) {
    const r = await c.get(`/events?after=${after}&limit=100`, token);
    assert.equal(r.status, 200, r.text);
    all.push(...r.json.events);
    if (!r.json.more) return all;
    after = r.json.events.at(-1).position;
  }
  throw new Error('the stream did not end');
}

function psql(sql) {
  return execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql]).toString().trim();
}

test('a teacher creates a group room; its members find it with unread counts', async () => {
  room = await c.room(P('t1').token, {
    school_id: A.id, kind: 'GROUP', name: 'Mathe 3b', topic: 'Hausaufgaben', member_ids: [P('p1').id, P('p2').id, P('m1').id],
  });
  assert.equal(room.kind, 'GROUP');
  assert.equal(room.my_role, 'MODERATOR');
  assert.equal(room.member_count, 4);
  const names = room.members.map((m) => m.display_name).sort();
  assert.deepEqual(names, [P('m1').display, P('p1').display, P('p2').display, P('t1').display].sort());

  await c.send(room.id, P('t1').token, 'Willkommen in **Mathe**!');
  await c.send(room.id, P('t1').token, 'Morgen bitte das Heft mitbringen.');
  const rooms = await c.rooms(P('p1').token);
  const mine = rooms.find((r) => r.id === room.id);
  assert.ok(mine, 'the pupil sees the room');
  assert.equal(mine.unread_count, 2);
  assert.equal(mine.my_role, 'MEMBER');
  // Someone not invited does not.
  assert.equal((await c.rooms(P('p3').token)).find((r) => r.id === room.id), undefined);
});

test('sending is idempotent by txn_id: a retry returns the first event and stores nothing twice', async () => {
  const txn = txnId();
  const first = await c.post(`/rooms/${room.id}/messages`, P('p1').token, { txn_id: txn, text: 'Ich habe eine Frage' });
  assert.equal(first.status, 201, first.text);
  const retry = await c.post(`/rooms/${room.id}/messages`, P('p1').token, { txn_id: txn, text: 'Ich habe eine Frage' });
  assert.equal(retry.status, 201, retry.text);
  assert.equal(retry.json.id, first.json.id);
  assert.equal(retry.json.position, first.json.position);
  // Even a retry with other content answers the first send.
  const changed = await c.post(`/rooms/${room.id}/messages`, P('p1').token, { txn_id: txn, text: 'anders' });
  assert.equal(changed.json.id, first.json.id);
  assert.equal(changed.json.message.text, 'Ich habe eine Frage');
  // Retries racing each other still make one message.
  const racing = txnId();
  const all = await Promise.all([1, 2, 3, 4].map(() => c.post(`/rooms/${room.id}/messages`, P('p2').token, { txn_id: racing, text: 'gleichzeitig' })));
  for (const r of all) assert.equal(r.status, 201, r.text);
  assert.equal(new Set(all.map((r) => r.json.id)).size, 1);
  const hist = await c.events(room.id, P('t1').token, '?messages_only=true');
  assert.equal(hist.events.filter((e) => e.message.text === 'Ich habe eine Frage').length, 1);
  assert.equal(hist.events.filter((e) => e.message.text === 'gleichzeitig').length, 1);
  // The same txn_id for another room is a conflict, not a silent duplicate.
  const other = await c.room(P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'Anderer Raum', member_ids: [P('p1').id] });
  const reused = await c.post(`/rooms/${other.id}/messages`, P('p1').token, { txn_id: txn, text: 'x' });
  assert.equal(reused.status, 409, reused.text);
  assert.equal(reused.json.error.code, 'messaging.txn_reused');
  // Another sender may use the same txn_id.
  const t1 = await c.post(`/rooms/${room.id}/messages`, P('t1').token, { txn_id: txn, text: 'Frag ruhig' });
  assert.notEqual(t1.json.id, first.json.id);
});

test('replies, mentions and attachment references are kept with the message', async () => {
  const q = await c.send(room.id, P('p2').token, 'Welche Seite?');
  const file = '01a2025c-0000-7000-8000-000000000001';
  const a = await c.send(room.id, P('t1').token, 'Seite 42, siehe Blatt', {
    reply_to: q.id, mentions: [P('p2').id],
    attachments: [{ file_id: file, name: 'Arbeitsblatt 3.pdf', media_type: 'application/pdf', size_bytes: '48213' }],
  });
  assert.equal(a.message.reply_to, q.id);
  assert.deepEqual(a.message.mentions, [P('p2').id]);
  assert.deepEqual(a.message.attachments, [{ file_id: file, name: 'Arbeitsblatt 3.pdf', media_type: 'application/pdf', size_bytes: '48213' }]);
  const r = (await c.rooms(P('p2').token)).find((x) => x.id === room.id);
  assert.equal(r.unread_mentions, 1);
});

test('an edit is marked; a deletion leaves a tombstone whose content is gone everywhere', async () => {
  const m = await c.send(room.id, P('p1').token, 'Ich komme morgen späte');
  const e = await c.patch(`/messages/${m.id}`, P('p1').token, { text: 'Ich komme morgen später' });
  assert.equal(e.status, 200, e.text);
  assert.equal(e.json.kind, 'MESSAGE_EDITED');
  assert.equal(e.json.message.text, 'Ich komme morgen später');
  assert.equal(e.json.message.edited, true);
  assert.ok(e.json.position > m.position);
  // Only the author edits.
  const foreign = await c.patch(`/messages/${m.id}`, P('t1').token, { text: 'nein' });
  assert.equal(foreign.status, 403, foreign.text);

  await c.post(`/messages/${m.id}/reactions`, P('t1').token, { key: '👍' });
  const d = await c.del(`/messages/${m.id}`, P('p1').token);
  assert.equal(d.status, 200, d.text);
  assert.equal(d.json.kind, 'MESSAGE_DELETED');
  assert.equal(d.json.message.deleted, true);
  assert.equal(d.json.message.text, '');
  assert.deepEqual(d.json.message.reactions, []);
  // The history still shows who wrote something when, but not what.
  const hist = await c.events(room.id, P('p2').token);
  const original = hist.events.find((x) => x.id === m.id);
  assert.equal(original.kind, 'MESSAGE');
  assert.equal(original.message.deleted, true);
  assert.equal(original.message.text, '');
  assert.equal(original.sender_id, P('p1').id);
  // And the database holds no copy of the text.
  assert.equal(psql(`SELECT count(*) FROM messaging.messages WHERE body LIKE '%morgen sp%'`), '0');
  assert.equal(psql(`SELECT count(*) FROM messaging.events WHERE data::text LIKE '%morgen sp%'`), '0');
  // Deleted is final.
  assert.equal((await c.patch(`/messages/${m.id}`, P('p1').token, { text: 'wieder da' })).status, 409);
  assert.equal((await c.del(`/messages/${m.id}`, P('p1').token)).status, 409);
});

test('reactions are counted per key with the caller\'s own marked', async () => {
  const m = await c.send(room.id, P('t1').token, 'Wer kommt zum Ausflug?');
  for (const [who, key] of [['p1', '👍'], ['p2', '👍'], ['m1', '🎉']]) {
    const r = await c.post(`/messages/${m.id}/reactions`, P(who).token, { key });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.kind, 'REACTION_ADDED');
    assert.equal(r.json.reaction_key, key);
  }
  const again = await c.post(`/messages/${m.id}/reactions`, P('p1').token, { key: '👍' });
  assert.equal(again.status, 409);
  let hist = await c.events(room.id, P('p1').token, '?messages_only=true');
  let msg = hist.events.find((e) => e.id === m.id).message;
  assert.deepEqual(msg.reactions, [{ key: '👍', count: 2, mine: true }, { key: '🎉', count: 1, mine: false }]);
  const un = await c.del(`/messages/${m.id}/reactions/${encodeURIComponent('👍')}`, P('p1').token);
  assert.equal(un.status, 200, un.text);
  assert.equal(un.json.kind, 'REACTION_REMOVED');
  hist = await c.events(room.id, P('p1').token, '?messages_only=true');
  msg = hist.events.find((e) => e.id === m.id).message;
  assert.deepEqual(msg.reactions, [{ key: '👍', count: 1, mine: false }, { key: '🎉', count: 1, mine: false }]);
  assert.equal((await c.del(`/messages/${m.id}/reactions/${encodeURIComponent('👍')}`, P('p1').token)).status, 404);
});

test('receipts move the unread count; others see the receipt', async () => {
  const before = (await c.rooms(P('m1').token)).find((r) => r.id === room.id);
  assert.ok(before.unread_count > 0);
  const head = before.last_position;
  const r = await c.post(`/rooms/${room.id}/read`, P('m1').token, { position: head });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.last_read_position, head);
  assert.equal(r.json.unread_count, 0);
  const after = (await c.rooms(P('m1').token)).find((x) => x.id === room.id);
  assert.equal(after.unread_count, 0);
  // A receipt never moves back, and a position beyond the room's log is refused.
  const back = await c.post(`/rooms/${room.id}/read`, P('m1').token, { position: '1' });
  assert.equal(back.json.last_read_position, head);
  const beyond = await c.post(`/rooms/${room.id}/read`, P('m1').token, { position: String(BigInt(after.last_position) + 1000n) });
  assert.equal(beyond.status, 400);
  assert.equal(beyond.json.error.code, 'messaging.invalid_position');
  const full = await c.get(`/rooms/${room.id}`, P('t1').token);
  assert.equal(full.json.members.find((m) => m.user_id === P('m1').id).last_read_position, head);
  const ev = await c.events(room.id, P('t1').token);
  const receipt = ev.events.filter((e) => e.kind === 'RECEIPT').at(-1);
  assert.equal(receipt.sender_id, P('m1').id);
  assert.equal(receipt.read_up_to, head);
});

test('announcements: only moderators post; members confirm; read by N of M', async () => {
  const ch = await c.room(P('t1').token, {
    school_id: A.id, kind: 'ANNOUNCEMENT', name: 'Elterninfo 3b', member_ids: [P('m1').id, P('p1').id, P('p2').id],
  });
  const post = await c.post(`/rooms/${ch.id}/messages`, P('p1').token, { txn_id: txnId(), text: 'darf ich?' });
  assert.equal(post.status, 403);
  assert.equal(post.json.error.code, 'messaging.announcement_only');
  const news = await c.send(ch.id, P('t1').token, 'Am Freitag fällt der Unterricht aus.');
  assert.deepEqual(news.message.read_status, { audience: 3, read: 0, confirmed: 0, confirmed_by_me: false });
  // Members react and read; one confirms.
  assert.equal((await c.post(`/messages/${news.id}/reactions`, P('p2').token, { key: '👍' })).status, 200);
  assert.equal((await c.post(`/rooms/${ch.id}/read`, P('p1').token, { position: news.position })).status, 200);
  const conf = await c.post(`/rooms/${ch.id}/read`, P('m1').token, { position: '0', confirm_message_id: news.id });
  assert.equal(conf.status, 200, conf.text);
  assert.equal(conf.json.last_read_position, news.position, 'confirming reads up to the message');
  const st = await c.get(`/messages/${news.id}/receipts`, P('t1').token);
  assert.equal(st.status, 200, st.text);
  assert.deepEqual(st.json.status, { audience: 3, read: 2, confirmed: 1, confirmed_by_me: false });
  assert.deepEqual(st.json.confirmed_ids, [P('m1').id]);
  assert.deepEqual(st.json.unread_ids, [P('p2').id]);
  assert.deepEqual([...st.json.read_ids].sort(), [P('m1').id, P('p1').id].sort());
  // Members see the counts, not who.
  const theirs = await c.get(`/messages/${news.id}/receipts`, P('p1').token);
  assert.equal(theirs.json.status.read, 2);
  assert.deepEqual(theirs.json.read_ids, []);
  // The history carries the same numbers, and the confirmation itself.
  const h = await c.events(ch.id, P('m1').token);
  assert.deepEqual(h.events.find((e) => e.id === news.id).message.read_status, { audience: 3, read: 2, confirmed: 1, confirmed_by_me: true });
  assert.ok(h.events.some((e) => e.kind === 'READ_CONFIRMED' && e.message_id === news.id && e.sender_id === P('m1').id));
  // Confirming twice changes nothing; confirming outside announcements is refused.
  assert.equal((await c.post(`/rooms/${ch.id}/read`, P('m1').token, { position: '0', confirm_message_id: news.id })).status, 200);
  const m = await c.send(room.id, P('t1').token, 'normal');
  const wrong = await c.post(`/rooms/${room.id}/read`, P('p1').token, { position: '0', confirm_message_id: m.id });
  assert.equal(wrong.status, 409);
});

test('polls: single and multiple choice, named and anonymous, live results, closing', async () => {
  const p = await c.post(`/rooms/${room.id}/polls`, P('t1').token, {
    txn_id: txnId(), question: 'Wohin geht der Ausflug?', options: ['Zoo', 'Museum', 'Wald'],
  });
  assert.equal(p.status, 201, p.text);
  const poll = p.json.message;
  assert.equal(poll.text, 'Wohin geht der Ausflug?');
  assert.deepEqual(poll.poll.options.map((o) => o.text), ['Zoo', 'Museum', 'Wald']);
  let v = await c.post(`/polls/${poll.id}/votes`, P('p1').token, { options: [0] });
  assert.equal(v.status, 200, v.text);
  assert.equal(v.json.poll.options[0].votes, 1);
  assert.equal(v.json.poll.options[0].mine, true);
  assert.deepEqual(v.json.poll.options[0].voter_ids, [P('p1').id]);
  // Single choice takes one option; a new vote replaces the old one.
  assert.equal((await c.post(`/polls/${poll.id}/votes`, P('p2').token, { options: [0, 1] })).status, 400);
  assert.equal((await c.post(`/polls/${poll.id}/votes`, P('p2').token, { options: [7] })).status, 400);
  await c.post(`/polls/${poll.id}/votes`, P('p2').token, { options: [0] });
  v = await c.post(`/polls/${poll.id}/votes`, P('p2').token, { options: [2] });
  assert.deepEqual(v.json.poll.options.map((o) => o.votes), [1, 0, 1]);
  assert.equal(v.json.poll.voters, 2);
  // Results are live for everyone in the room.
  const seen = await c.get(`/polls/${poll.id}`, P('m1').token);
  assert.deepEqual(seen.json.poll.options.map((o) => o.votes), [1, 0, 1]);
  // Only the author or a moderator closes; then votes are refused.
  assert.equal((await c.post(`/polls/${poll.id}/close`, P('p1').token)).status, 403);
  const closed = await c.post(`/polls/${poll.id}/close`, P('t1').token);
  assert.equal(closed.status, 200, closed.text);
  assert.equal(closed.json.poll.closed, true);
  const late = await c.post(`/polls/${poll.id}/votes`, P('m1').token, { options: [1] });
  assert.equal(late.status, 409);
  assert.equal(late.json.error.code, 'messaging.poll_closed');

  // Anonymous, multiple choice, closing by itself.
  const closesAt = new Date(Date.now() + 3000).toISOString();
  const a = await c.post(`/rooms/${room.id}/polls`, P('t1').token, {
    txn_id: txnId(), question: 'Was bringt ihr mit?', options: ['Obst', 'Saft', 'Kuchen'], multiple_choice: true, anonymous: true, closes_at: closesAt,
  });
  assert.equal(a.status, 201, a.text);
  const anon = a.json.message.id;
  v = await c.post(`/polls/${anon}/votes`, P('p1').token, { options: [0, 2] });
  assert.equal(v.status, 200, v.text);
  assert.deepEqual(v.json.poll.options.map((o) => o.votes), [1, 0, 1]);
  assert.deepEqual(v.json.poll.options.map((o) => o.voter_ids), [[], [], []]);
  assert.equal(v.json.poll.anonymous, true);
  // The log does not tell who voted in an anonymous poll.
  const h = await c.events(room.id, P('t1').token);
  const votes = h.events.filter((e) => e.kind === 'POLL_VOTED' && e.message_id === anon);
  assert.equal(votes.length, 1);
  assert.equal(votes[0].sender_id, '');
  await until(async () => (await c.get(`/polls/${anon}`, P('p1').token)).json.poll.closed, { what: 'the poll to close at closes_at', timeoutMs: 8000, intervalMs: 250 });
  assert.equal((await c.post(`/polls/${anon}/votes`, P('p2').token, { options: [1] })).status, 409);
});

test('history pages backward from the end and forward from a position; the stream spans rooms', async () => {
  const r2 = await c.room(P('t2').token, { school_id: A.id, kind: 'GROUP', name: 'Lesen', member_ids: [P('p3').id] });
  const sent = [];
  for (let i = 0; i < 7; i++) sent.push(await c.send(r2.id, P('t2').token, `Nachricht ${i}`));
  // The newest three, oldest first, and the page before them.
  let page = await c.events(r2.id, P('p3').token, '?messages_only=true&limit=3');
  assert.deepEqual(page.events.map((e) => e.message.text), ['Nachricht 4', 'Nachricht 5', 'Nachricht 6']);
  assert.equal(page.more, true);
  assert.equal(page.head, sent[6].position);
  page = await c.events(r2.id, P('p3').token, `?messages_only=true&limit=3&before=${page.events[0].position}`);
  assert.deepEqual(page.events.map((e) => e.message.text), ['Nachricht 1', 'Nachricht 2', 'Nachricht 3']);
  page = await c.events(r2.id, P('p3').token, `?messages_only=true&limit=3&before=${page.events[0].position}`);
  assert.deepEqual(page.events.map((e) => e.message.text), ['Nachricht 0']);
  assert.equal(page.more, false);
  // Forward from a position, as a client catching up.
  page = await c.events(r2.id, P('p3').token, `?messages_only=true&limit=4&after=${sent[1].position}`);
  assert.deepEqual(page.events.map((e) => e.message.text), ['Nachricht 2', 'Nachricht 3', 'Nachricht 4', 'Nachricht 5']);
  assert.equal(page.more, true);
  page = await c.events(r2.id, P('p3').token, `?messages_only=true&limit=4&after=${page.events.at(-1).position}`);
  assert.deepEqual(page.events.map((e) => e.message.text), ['Nachricht 6']);
  assert.equal(page.more, false);
  // Between two positions.
  page = await c.events(r2.id, P('p3').token, `?messages_only=true&after=${sent[2].position}&before=${sent[5].position}`);
  assert.deepEqual(page.events.map((e) => e.message.text), ['Nachricht 3', 'Nachricht 4']);

  // The stream of t2 (in both rooms? only r2) and of p1 (several rooms):
  // positions order everything across rooms.
  const mark = sent[6].position;
  const x = await c.send(room.id, P('t1').token, 'im ersten Raum');
  const y = await c.send(r2.id, P('t2').token, 'im zweiten Raum');
  await c.post(`/rooms/${r2.id}/members`, P('t2').token, { user_ids: [P('p1').id] });
  const z = await c.send(r2.id, P('t2').token, 'jetzt mit p1');
  const stream = await c.get(`/events?after=${mark}&messages_only=true`, P('p1').token);
  assert.equal(stream.status, 200, stream.text);
  const texts = stream.json.events.map((e) => e.message.text);
  assert.deepEqual(texts, ['im ersten Raum', 'im zweiten Raum', 'jetzt mit p1']);
  const positions = stream.json.events.map((e) => BigInt(e.position));
  assert.deepEqual(positions, [...positions].sort((a, b) => (a < b ? -1 : 1)));
  assert.equal(stream.json.head, z.position);
  // p3 sees only r2's.
  const s3 = await c.get(`/events?after=${mark}&messages_only=true`, P('p3').token);
  assert.deepEqual(s3.json.events.map((e) => e.id), [y.id, z.id]);
  assert.ok(!s3.json.events.some((e) => e.id === x.id));
});

test('search finds words by prefix within a room, for its members, without deleted messages', async () => {
  const r3 = await c.room(P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'Sachkunde', member_ids: [P('p1').id] });
  const a = await c.send(r3.id, P('t1').token, 'Der Ausflug in den Tierpark ist am Dienstag');
  const b = await c.send(r3.id, P('p1').token, 'Kommen die Eltern zum Ausflug mit?');
  await c.send(r3.id, P('t1').token, 'Heute: Pflanzen');
  const gone = await c.send(r3.id, P('p1').token, 'Ausflug gelöscht');
  await c.del(`/messages/${gone.id}`, P('p1').token);
  await c.send(room.id, P('t1').token, 'Ausflug in einem anderen Raum');
  let r = await c.get(`/rooms/${r3.id}/search?q=ausfl`, P('p1').token);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.messages.map((m) => m.id), [b.id, a.id]);
  r = await c.get(`/rooms/${r3.id}/search?q=${encodeURIComponent('tierp dienst')}`, P('p1').token);
  assert.deepEqual(r.json.messages.map((m) => m.id), [a.id]);
  r = await c.get(`/rooms/${r3.id}/search?q=ausflug&limit=1`, P('p1').token);
  assert.equal(r.json.more, true);
  r = await c.get(`/rooms/${r3.id}/search?q=ausflug&limit=1&before=${r.json.messages[0].position}`, P('p1').token);
  assert.deepEqual(r.json.messages.map((m) => m.id), [a.id]);
  // Not for people outside the room.
  assert.equal((await c.get(`/rooms/${r3.id}/search?q=ausflug`, P('p2').token)).status, 404);
});

test('pins: moderators pin, the room lists them, members may not', async () => {
  const m = await c.send(room.id, P('t1').token, 'Regeln: freundlich bleiben.');
  assert.equal((await c.post(`/messages/${m.id}/pin`, P('p1').token)).status, 403);
  const pin = await c.post(`/messages/${m.id}/pin`, P('t1').token);
  assert.equal(pin.status, 200, pin.text);
  assert.equal(pin.json.kind, 'MESSAGE_PINNED');
  assert.deepEqual((await c.get(`/rooms/${room.id}`, P('p1').token)).json.pinned_message_ids, [m.id]);
  const h = await c.events(room.id, P('p1').token, '?messages_only=true');
  assert.equal(h.events.find((e) => e.id === m.id).message.pinned, true);
  assert.equal((await c.post(`/messages/${m.id}/pin`, P('t1').token)).status, 409);
  assert.equal((await c.del(`/messages/${m.id}/pin`, P('t1').token)).status, 200);
  assert.deepEqual((await c.get(`/rooms/${room.id}`, P('p1').token)).json.pinned_message_ids, []);
});

test('direct rooms: one per pair, both see it under the other\'s name', async () => {
  const d1 = await c.room(P('m1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('t1').id] });
  assert.equal(d1.kind, 'DIRECT');
  assert.equal(d1.name, P('t1').display);
  const d2 = await c.room(P('t1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('m1').id] });
  assert.equal(d2.id, d1.id, 'the second request finds the first room');
  assert.equal(d2.name, P('m1').display);
  await c.send(d1.id, P('m1').token, 'Guten Tag, kurze Frage zu Lea.');
  const theirs = (await c.rooms(P('t1').token)).find((r) => r.id === d1.id);
  assert.equal(theirs.unread_count, 1);
});

test('moderation: reports reach moderators and admins, mute and lock stop posting, removal settles the report', async () => {
  const bad = await c.send(room.id, P('p2').token, 'Das ist gemein formuliert');
  const rep = await c.post(`/messages/${bad.id}/reports`, P('p1').token, { reason: 'beleidigend' });
  assert.equal(rep.status, 201, rep.text);
  assert.equal(rep.json.excerpt, 'Das ist gemein formuliert');
  assert.equal(rep.json.sender_id, P('p2').id);
  assert.equal((await c.post(`/messages/${bad.id}/reports`, P('p1').token, { reason: 'nochmal' })).status, 409);
  // The room's moderator and the school's admin see it; a member does not.
  const byMod = await c.get(`/schools/${A.id}/message-reports`, P('t1').token);
  assert.deepEqual(byMod.json.reports.map((r) => r.id), [rep.json.id]);
  const byAdmin = await c.get(`/schools/${A.id}/message-reports`, P('ad').token);
  assert.deepEqual(byAdmin.json.reports.map((r) => r.id), [rep.json.id]);
  assert.deepEqual((await c.get(`/schools/${A.id}/message-reports`, P('p1').token)).json.reports, []);

  const mute = await c.post(`/rooms/${room.id}/members/${P('p2').id}/mute`, P('t1').token, { muted: true });
  assert.equal(mute.status, 200, mute.text);
  assert.equal(mute.json.kind, 'MEMBER_MUTED');
  const muted = await c.post(`/rooms/${room.id}/messages`, P('p2').token, { txn_id: txnId(), text: 'hallo?' });
  assert.equal(muted.status, 403);
  assert.equal(muted.json.error.code, 'messaging.muted');
  await c.post(`/rooms/${room.id}/members/${P('p2').id}/mute`, P('t1').token, { muted: false });
  await c.send(room.id, P('p2').token, 'Entschuldigung');

  // The school's admin locks the room without being in it.
  const lock = await c.post(`/rooms/${room.id}/lock`, P('ad').token, { locked: true });
  assert.equal(lock.status, 200, lock.text);
  const locked = await c.post(`/rooms/${room.id}/messages`, P('p1').token, { txn_id: txnId(), text: 'x' });
  assert.equal(locked.json.error.code, 'messaging.room_locked');
  await c.send(room.id, P('t1').token, 'Der Raum ist kurz gesperrt.');
  assert.equal((await c.post(`/rooms/${room.id}/lock`, P('t1').token, { locked: false })).status, 200);

  const rm = await c.post(`/messages/${bad.id}/removal`, P('t1').token, { reason: 'Regel 1' });
  assert.equal(rm.status, 200, rm.text);
  assert.equal(rm.json.message.deleted, true);
  assert.equal(rm.json.message.removed_by_moderator, true);
  const settled = await c.get(`/schools/${A.id}/message-reports?include_resolved=true`, P('ad').token);
  const r = settled.json.reports.find((x) => x.id === rep.json.id);
  assert.equal(r.resolved, true);
  assert.equal(r.resolution, 'removed');
  assert.deepEqual((await c.get(`/schools/${A.id}/message-reports`, P('ad').token)).json.reports, []);
  // Every moderation step is in the audit log, without content.
  const audit = psql(`SELECT string_agg(action, ',' ORDER BY id) FROM messaging.audit WHERE room_id = '${room.id}'`);
  assert.match(audit, /member\.muted.*room\.locked.*message\.removed/);
  assert.equal(psql(`SELECT count(*) FROM messaging.audit WHERE counts::text LIKE '%gemein%'`), '0');
});

test('every appended event is announced on kreide.messaging.events with room, position and members', async () => {
  const sub = subscribe(s.redisUrl, 'kreide.messaging.events');
  await sub.ready;
  try {
    const m = await c.send(room.id, P('t1').token, 'Ansage');
    const got = await until(() => sub.messages.map((x) => JSON.parse(x)).find((x) => x.event_id === m.id), { what: 'the announcement' });
    assert.equal(got.kind, 'message');
    assert.equal(got.position, m.position);
    assert.equal(got.room_id, room.id);
    assert.equal(got.school_id, A.id);
    assert.equal(got.sender_id, P('t1').id);
    assert.deepEqual([...got.members].sort(), [P('t1').id, P('p1').id, P('p2').id, P('m1').id].sort());
    // Typing is announced too, to the others, and never stored.
    const before = psql('SELECT position FROM messaging.log_head');
    assert.equal((await c.post(`/rooms/${room.id}/typing`, P('p1').token, { typing: true })).status, 200);
    const typing = await until(() => sub.messages.map((x) => JSON.parse(x)).find((x) => x.kind === 'typing'), { what: 'typing' });
    assert.equal(typing.user_id, P('p1').id);
    assert.equal(typing.typing, true);
    assert.ok(!typing.members.includes(P('p1').id));
    assert.equal(psql('SELECT position FROM messaging.log_head'), before);
  } finally {
    sub.close();
  }
});

test('class rooms follow the identity group: leaders moderate, members come and go', async () => {
  const g = await api(`${s.url}/api/v1/schools/${A.id}/groups`, { method: 'POST', token: P('ad').token, body: { kind: 'CLASS', name: '1a', school_year: '2026/27' } });
  assert.equal(g.status, 201, g.text);
  const addMember = (user, role = 'MEMBER') => api(`${s.url}/api/v1/groups/${g.json.id}/members`, { method: 'POST', token: P('ad').token, body: { user_id: user, role } });
  assert.equal((await addMember(P('t2').id, 'LEADER')).status, 201);
  assert.equal((await addMember(P('p1').id)).status, 201);
  const classRoom = await until(async () => (await c.rooms(P('p1').token)).find((r) => r.group_id === g.json.id), { what: 'the class room for p1' });
  assert.equal(classRoom.kind, 'ROSTER');
  assert.equal(classRoom.name, '1a');
  assert.equal(classRoom.group_kind, 'class');
  await until(async () => (await c.get(`/rooms/${classRoom.id}`, P('t2').token)).json.my_role === 'MODERATOR', { what: 'the leader moderates' });
  // Members cannot be added by hand.
  const byHand = await c.post(`/rooms/${classRoom.id}/members`, P('t2').token, { user_ids: [P('p3').id] });
  assert.equal(byHand.status, 409);
  assert.equal(byHand.json.error.code, 'messaging.follows_group');
  await c.send(classRoom.id, P('p1').token, 'Hallo 1a');

  // Removed at identity: out of the room, which answers as if it did not exist.
  const rm = await api(`${s.url}/api/v1/groups/${g.json.id}/members/${P('p1').id}`, { method: 'DELETE', token: P('ad').token });
  assert.equal(rm.status, 200, rm.text);
  await until(async () => (await c.get(`/rooms/${classRoom.id}`, P('p1').token)).status === 404, { what: 'p1 to leave the class room' });
  assert.equal((await c.rooms(P('p1').token)).find((r) => r.id === classRoom.id), undefined);
  const h = await c.events(classRoom.id, P('t2').token);
  const left = h.events.find((e) => e.kind === 'MEMBER_LEFT' && e.user_id === P('p1').id);
  assert.ok(left, 'the log records the leaving');
  assert.equal(left.sender_id, '', 'a roster change is the service\'s own event');
  // p1's stream still holds the room up to the leaving, nothing after.
  const after = await c.send(classRoom.id, P('t2').token, 'nach dem Wechsel');
  const stream = await wholeStream(P('p1').token);
  assert.ok(stream.some((e) => e.id === left.id));
  assert.ok(!stream.some((e) => e.id === after.id));
});

test('reconciliation heals missed roster events: while messaging was away, and when an event was lost', async () => {
  const g = await api(`${s.url}/api/v1/schools/${A.id}/groups`, { method: 'POST', token: P('ad').token, body: { kind: 'COURSE', name: 'Englisch', school_year: '2026/27' } });
  assert.equal(g.status, 201, g.text);
  const add = (user) => api(`${s.url}/api/v1/groups/${g.json.id}/members`, { method: 'POST', token: P('ad').token, body: { user_id: user } });
  assert.equal((await add(P('p1').id)).status, 201);
  const course = await until(async () => (await c.rooms(P('p1').token)).find((r) => r.group_id === g.json.id), { what: 'the course room' });

  // Messaging is away while identity changes: the event reaches nobody.
  await s.messaging.stop();
  assert.equal((await add(P('p2').id)).status, 201);
  s.messaging.start();
  await until(async () => (await api(`${s.url}/readyz`)).status === 200, { what: 'messaging back' });
  await until(async () => (await c.get(`/rooms/${course.id}`, P('p2').token)).status === 200, { what: 'p2 in the course room after the restart' });

  // An event lost on the way: the membership changes without one.
  const today = new Date().toISOString().slice(0, 10);
  execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc',
    `INSERT INTO identity.memberships (school_id, group_id, user_id, role, valid_from) VALUES ('${A.id}', '${g.json.id}', '${P('p3').id}', 'member', '${today}')`]);
  await until(async () => (await c.get(`/rooms/${course.id}`, P('p3').token)).status === 200,
    { what: 'the periodic reconciliation to add p3', timeoutMs: 15000, intervalMs: 250 });
  // And one that ended: validity in the past counts as gone.
  execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc',
    `UPDATE identity.memberships SET valid_from = '2020-01-01', valid_to = '2020-12-31' WHERE group_id = '${g.json.id}' AND user_id = '${P('p3').id}'`]);
  await until(async () => (await c.get(`/rooms/${course.id}`, P('p3').token)).status === 404,
    { what: 'the periodic reconciliation to remove p3', timeoutMs: 15000, intervalMs: 250 });
});

// Moves a room's history back in time, as far as the database is concerned.
function backdate(roomId, days) {
  psql(`UPDATE messaging.events SET created_at = created_at - interval '${days} days' WHERE room_id = '${roomId}'`);
  psql(`UPDATE messaging.messages SET created_at = created_at - interval '${days} days' WHERE room_id = '${roomId}'`);
}

test('retention: expired messages vanish from every read at once, then from the database, audited', async () => {
  const r = await c.room(P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'Alt und neu', member_ids: [P('p1').id] });
  const old = [];
  for (let i = 0; i < 5; i++) {
    old.push(await c.send(r.id, P('t1').token, `alte Nachricht ${i}`, i === 0
      ? { attachments: [{ file_id: '01a2025c-0000-7000-8000-000000000002', name: 'a.txt', media_type: 'text/plain', size_bytes: '3' }] } : {}));
  }
  backdate(r.id, 10);
  const fresh = await c.send(r.id, P('t1').token, 'neue Nachricht');
  let h = await c.events(r.id, P('p1').token, '?messages_only=true');
  assert.equal(h.events.length, 6);

  // The room keeps seven days: the old ones are gone from history,
  // search, unread counts, the stream, and cannot be acted on.
  const set = await c.put(`/rooms/${r.id}/retention`, P('t1').token, { retention_days: 7 });
  assert.equal(set.status, 200, set.text);
  assert.equal(set.json.effective_retention_days, 7);
  h = await c.events(r.id, P('p1').token, '?messages_only=true');
  assert.deepEqual(h.events.map((e) => e.id), [fresh.id]);
  assert.deepEqual((await c.get(`/rooms/${r.id}/search?q=alte`, P('p1').token)).json.messages, []);
  assert.equal((await c.rooms(P('p1').token)).find((x) => x.id === r.id).unread_count, 1);
  assert.equal((await c.post(`/messages/${old[1].id}/reactions`, P('p1').token, { key: '👍' })).status, 404);
  const stream = await wholeStream(P('p1').token);
  assert.ok(stream.some((e) => e.id === fresh.id));
  assert.ok(!stream.some((e) => old.some((o) => o.id === e.id || o.id === e.message_id)));

  // The sweep then deletes them for good and writes counts, never content.
  const ids = old.map((m) => `'${m.id}'`).join(',');
  await until(() => psql(`SELECT count(*) FROM messaging.messages WHERE id IN (${ids})`) === '0', { what: 'the retention sweep', timeoutMs: 15000, intervalMs: 250 });
  assert.equal(psql(`SELECT count(*) FROM messaging.attachments WHERE message_id IN (${ids})`), '0');
  assert.equal(psql(`SELECT count(*) FROM messaging.messages WHERE room_id = '${r.id}'`), '1');
  const audit = await until(() => {
    const row = psql(`SELECT counts FROM messaging.audit WHERE action = 'purge' AND rule = 'retention' AND school_id = '${A.id}' ORDER BY id DESC LIMIT 1`);
    return row ? JSON.parse(row) : null;
  }, { what: 'the audit entry' });
  assert.equal(audit.messages, 5);
  assert.equal(audit.attachments, 1);
  assert.ok(audit.events >= 5);
  assert.equal(psql("SELECT count(*) FROM messaging.audit WHERE counts::text LIKE '%alte Nachricht%'"), '0');

  // A school-wide limit applies to every room the same way; the shorter wins.
  const pol = await c.put(`/schools/${A.id}/messaging-policy`, P('ad').token, { retention_days: 8, set_retention: true });
  assert.equal(pol.status, 200, pol.text);
  assert.equal((await c.get(`/rooms/${room.id}`, P('t1').token)).json.effective_retention_days, 8);
  assert.equal((await c.get(`/rooms/${r.id}`, P('t1').token)).json.effective_retention_days, 7);
  await c.put(`/schools/${A.id}/messaging-policy`, P('ad').token, { retention_days: 0, set_retention: true });
  assert.equal((await c.get(`/rooms/${room.id}`, P('t1').token)).json.effective_retention_days, 0);
});

test('PurgeBefore deletes everything before a cutoff in bounded batches and audits the counts', async () => {
  const r = await c.room(P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'Schuljahr 2025', member_ids: [P('p1').id] });
  const old = [];
  for (let i = 0; i < 5; i++) {
    old.push(await c.send(r.id, P('t1').token, `Protokoll ${i}`, i === 0
      ? { attachments: [{ file_id: '01a2025c-0000-7000-8000-000000000003', name: 'p.pdf', media_type: 'application/pdf', size_bytes: '9' }] } : {}));
  }
  await c.post(`/messages/${old[2].id}/reactions`, P('p1').token, { key: '👍' });
  backdate(r.id, 3);
  const fresh = await c.send(r.id, P('t1').token, 'dieses Jahr');
  const cutoff = new Date(Date.now() - 2 * 86400000).toISOString();
  const counted = psql(`SELECT count(*) FROM messaging.events WHERE room_id = '${r.id}' AND created_at < '${cutoff}'`);
  const out = s.rpc('kreide.messaging.Messaging/PurgeBefore',
    JSON.stringify({ school_id: A.id, room_id: r.id, before: cutoff, batch_size: 2, reason: 'end of school year 2025' }),
    { url: s.messagingUrl, roles: ['operator'] }).body;
  assert.equal(out.events, counted, JSON.stringify(out));
  assert.equal(out.messages, '5');
  assert.equal(out.attachments, '1');
  assert.equal(out.done, true);
  assert.equal(out.batches, Math.ceil((Number(counted) + 1) / 2));
  const ids = old.map((m) => `'${m.id}'`).join(',');
  assert.equal(psql(`SELECT count(*) FROM messaging.messages WHERE id IN (${ids})`), '0');
  assert.equal(psql(`SELECT count(*) FROM messaging.reactions WHERE message_id IN (${ids})`), '0');
  assert.equal(psql(`SELECT count(*) FROM messaging.events WHERE room_id = '${r.id}' AND created_at < '${cutoff}'`), '0');
  const audit = JSON.parse(psql(`SELECT counts FROM messaging.audit WHERE action = 'purge' AND room_id = '${r.id}'`));
  assert.equal(String(audit.events), counted);
  assert.equal(audit.messages, 5);
  assert.equal(audit.attachments, 1);
  assert.equal(psql(`SELECT rule FROM messaging.audit WHERE action = 'purge' AND room_id = '${r.id}'`), 'end of school year 2025');
  // The room and the newer message are still there.
  const h = await c.events(r.id, P('p1').token, '?messages_only=true');
  assert.deepEqual(h.events.map((e) => e.id), [fresh.id]);
  // A second purge of the whole school finds nothing more before the cutoff.
  const again = s.rpc('kreide.messaging.Messaging/PurgeBefore', JSON.stringify({ school_id: A.id, before: cutoff }),
    { url: s.messagingUrl, roles: ['operator'] }).body;
  assert.equal(again.events, '0');
  assert.equal(again.done, true);
});

test('a school admin sets the policy; presets give Kitas and co-operatives their defaults', async () => {
  let p = await c.get(`/schools/${A.id}/messaging-policy`, P('p1').token);
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json.preset, 'school');
  assert.equal(p.json.customized, false);
  const has = (pol, from, to) => pol.direct_rules.some((r) => r.from === from && r.to === to);
  assert.equal(has(p.json, 'pupil', 'pupil'), false);
  assert.equal(has(p.json, 'pupil', 'teacher'), true);
  assert.equal(has(p.json, 'parent', 'parent'), false);
  assert.deepEqual(p.json.room_creators, ['teacher', 'staff', 'head', 'school_admin']);
  // Pupils may chat with each other once the admin allows it.
  const refused = await c.post('/rooms', P('p1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('p2').id] });
  assert.equal(refused.status, 403);
  const rules = [...p.json.direct_rules, { from: 'pupil', to: 'pupil' }];
  p = await c.put(`/schools/${A.id}/messaging-policy`, P('ad').token, { direct_rules: rules, set_direct_rules: true, room_creators: ['teacher', 'pupil'], set_room_creators: true });
  assert.equal(p.status, 200, p.text);
  assert.equal(p.json.customized, true);
  assert.equal(has(p.json, 'pupil', 'pupil'), true);
  const dm = await c.post('/rooms', P('p1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('p2').id] });
  assert.equal(dm.status, 201, dm.text);
  assert.equal((await c.post('/rooms', P('p1').token, { school_id: A.id, kind: 'GROUP', name: 'Fußball' })).status, 201);
  // Back to the preset.
  p = await c.put(`/schools/${A.id}/messaging-policy`, P('ad').token, { preset: 'school' });
  assert.equal(p.json.customized, false);
  assert.equal(has(p.json, 'pupil', 'pupil'), false);
  assert.equal(psql(`SELECT count(*) FROM messaging.audit WHERE school_id = '${A.id}' AND action = 'policy.changed'`) >= '3', true);

  // A Kita's and a co-operative's defaults come from their kind at identity.
  const kita = await makeSchool(s, op, 'Kita Regenbogen', { erz: 'staff', mum: 'parent', dad: 'parent' }, 'KITA');
  const kp = await c.get(`/schools/${kita.id}/messaging-policy`, kita.people.mum.token);
  assert.equal(kp.json.preset, 'kita');
  assert.equal((await c.post('/rooms', kita.people.mum.token, { school_id: kita.id, kind: 'DIRECT', member_ids: [kita.people.dad.id] })).status, 403);
  assert.equal((await c.post('/rooms', kita.people.mum.token, { school_id: kita.id, kind: 'DIRECT', member_ids: [kita.people.erz.id] })).status, 201);
  const coop = await makeSchool(s, op, 'Wohnungsgenossenschaft Eintracht', { n1: 'parent', n2: 'parent' }, 'COMMUNITY');
  assert.equal((await c.post('/rooms', coop.people.n1.token, { school_id: coop.id, kind: 'DIRECT', member_ids: [coop.people.n2.id] })).status, 201);
  assert.equal((await c.post('/rooms', coop.people.n1.token, { school_id: coop.id, kind: 'GROUP', name: 'Haus 3' })).status, 201);
});

test('the OpenAPI document lists the messaging routes and readyz waits for messaging', async () => {
  const doc = await api(`${s.url}/api/v1/openapi.json`);
  assert.ok(doc.json.paths['/api/v1/rooms/{room_id}/messages'].post);
  assert.equal(doc.json.paths['/api/v1/rooms/{room_id}/messages'].post['x-kreide-rpc'], 'kreide.messaging.Messaging/SendMessage');
  assert.ok(doc.json.components.schemas['kreide.messaging.Event']);
  const ready = await api(`${s.url}/readyz`);
  assert.equal(ready.json.services.messaging.ready, true);
  const st = await api(`${s.url}/api/v1/status/messaging`);
  assert.equal(st.status, 200);
  assert.equal(st.json.database_ok, true);
});
