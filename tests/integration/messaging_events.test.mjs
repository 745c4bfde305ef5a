// The announcements on kreide.messaging.events that the gateways' WebSocket
// hub forwards (docs/messaging.md, "Realtime"; docs/realtime.md): every
// appended event is announced once, after its commit, to the room's members
// at its position (and whoever left with it), carrying the event exactly as
// ListEvents shows it to no one in particular. Checked for every kind of
// append: the handlers, the roster follower, and a burst of concurrent
// appends from several clients, whose positions must come out as the
// contiguous range with each position once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { api, startSuite, subscribe, until } from '../lib/kreide.mjs';
import { client, makeSchool, txnId } from '../lib/messaging.mjs';

let s;
let c;
let A; // the school of every room here
let B; // another school, whose people must never hear of A's rooms
let sub;

before(async () => {
  s = await startSuite({ name: 'msgevents', env: { KREIDE_MESSAGING_RECONCILE_S: '2' } });
  const op = s.token({ roles: ['operator'] });
  c = client(s);
  A = await makeSchool(s, op, 'Gesamtschule Auenweg', {
    t1: 'teacher', t2: 'teacher', p1: 'pupil', p2: 'pupil', p3: 'pupil', m1: 'parent', o1: 'pupil', ad: 'school_admin',
  });
  B = await makeSchool(s, op, 'Realschule Bergstraße', { x1: 'teacher', x2: 'pupil' });
  // B's people in a room of their own, so that B has announcements too.
  await c.room(B.people.x1.token, { school_id: B.id, kind: 'GROUP', name: 'Nebenan', member_ids: [B.people.x2.id] });
  sub = subscribe(s.redisUrl, 'kreide.messaging.events');
  await sub.ready;
});
after(async () => {
  if (sub) sub.close();
  if (s) await s.stop();
});

const P = (alias) => A.people[alias];
const ids = (...aliases) => aliases.map((a) => P(a).id).sort();

function psql(sql) {
  return execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql]).toString().trim();
}
const head = () => BigInt(psql('SELECT position FROM messaging.log_head'));

// The log announcements of this suite's schools (the channel is shared with
// every other suite running on the same Redis).
function announcements() {
  return sub.messages.map((m) => JSON.parse(m)).filter((x) => x.position !== undefined && [A.id, B.id].includes(x.school_id));
}

// Waits until every position in (from, to] was announced; returns them in
// position order, failing on a position announced twice.
async function announced(from, to) {
  const inRange = () => announcements().filter((x) => BigInt(x.position) > from && BigInt(x.position) <= to);
  await until(() => new Set(inRange().map((x) => x.position)).size === Number(to - from),
    { what: `the announcements of positions ${from + 1n} to ${to}` });
  const got = inRange().sort((x, y) => (BigInt(x.position) < BigInt(y.position) ? -1 : 1));
  assert.equal(got.length, Number(to - from), 'every position is announced once');
  return got;
}

// One event as ListEvents shows it to `token`.
async function listed(roomId, token, position) {
  const r = await c.get(`/rooms/${roomId}/events?after=${BigInt(position) - 1n}&limit=1`, token);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.events[0]?.position, position);
  return r.json.events[0];
}

// An event as no one in particular reads it.
function byNoOne(event) {
  const e = structuredClone(event);
  const m = e.message;
  if (m) {
    for (const r of m.reactions) r.mine = false;
    if (m.poll) for (const o of m.poll.options) o.mine = false;
    if (m.read_status) m.read_status.confirmed_by_me = false;
  }
  return e;
}

// Checks an announcement's event against ListEvents as each of `aliases`
// who can still read the room sees it, read by no one in particular.
async function sameAsListed(a, aliases) {
  let compared = 0;
  for (const alias of aliases) {
    const r = await c.get(`/rooms/${a.room_id}/events?after=${BigInt(a.position) - 1n}&limit=1`, P(alias).token);
    if (r.status === 404) continue; // left the room since
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.events[0]?.position, a.position);
    assert.deepEqual(a.event, byNoOne(r.json.events[0]), `${a.kind} at ${a.position} as ${alias} lists it`);
    compared++;
  }
  assert.ok(compared > 0, `someone lists ${a.kind} at ${a.position}`);
}

// Runs `fn` (one or more appends), then checks each announcement it caused:
// the facts, the event as every member lists it (read by no one in
// particular) and the audience `audience` (aliases).
async function step(audience, fn) {
  const from = head();
  const result = await fn();
  const to = head();
  assert.ok(to > from, 'the step appended something');
  const got = await announced(from, to);
  for (const a of got) {
    assert.equal(a.event.position, a.position);
    assert.equal(a.event.id, a.event_id);
    assert.equal(a.event.room_id, a.room_id);
    assert.equal(a.event.school_id, a.school_id);
    assert.equal(a.event.sender_id, a.sender_id);
    assert.equal(a.event.created_at, a.created_at);
    assert.deepEqual([...a.members].sort(), ids(...audience), `the audience of ${a.kind} at ${a.position}`);
    await sameAsListed(a, audience);
  }
  return { result, got };
}

let room; // t1's group room

test('each handler\'s appends are announced with the event as ListEvents shows it, to the room\'s members', async () => {
  let r = await step(['t1', 'p1', 'p2'], () => c.room(P('t1').token, {
    school_id: A.id, kind: 'GROUP', name: 'Chemie 9c', member_ids: [P('p1').id, P('p2').id],
  }));
  room = r.result;
  assert.deepEqual(r.got.map((a) => a.kind), ['room.created', 'member.joined', 'member.joined', 'member.joined']);

  // A message with everything a message can carry: the announcement holds
  // what the sender's reply holds.
  const q = (await step(['t1', 'p1', 'p2'], () => c.send(room.id, P('t1').token, 'Versuch 3 morgen?'))).result;
  r = await step(['t1', 'p1', 'p2'], () => c.send(room.id, P('p1').token, 'Ja, *Protokoll* anbei @Herr', {
    reply_to: q.id, mentions: [P('t1').id],
    attachments: [{ file_id: '01a2025c-0000-7000-8000-0000000000e1', name: 'Protokoll "3".pdf', media_type: 'application/pdf', size_bytes: '70213' }],
  }));
  const m = r.result;
  assert.deepEqual(r.got[0].event, m, 'the announcement holds the reply');
  assert.equal(r.got[0].event.message.attachments[0].name, 'Protokoll "3".pdf');

  // A reaction, then an edit showing it: the reactor's own view says mine,
  // the announcement does not.
  await step(['t1', 'p1', 'p2'], () => c.post(`/messages/${m.id}/reactions`, P('p2').token, { key: '🧪' }));
  r = await step(['t1', 'p1', 'p2'], () => c.patch(`/messages/${m.id}`, P('p1').token, { text: 'Ja, Protokoll anbei' }));
  assert.deepEqual(r.got[0].event.message.reactions, [{ key: '🧪', count: 1, mine: false }]);
  assert.equal((await listed(room.id, P('p2').token, r.got[0].position)).message.reactions[0].mine, true);

  await step(['t1', 'p1', 'p2'], () => c.post(`/messages/${m.id}/pin`, P('t1').token));
  await step(['t1', 'p1', 'p2'], () => c.post(`/rooms/${room.id}/read`, P('p2').token, { position: m.position }));

  // Polls: a named poll's voters are in the announcement; an anonymous
  // poll's vote is the service's event.
  const poll = (await step(['t1', 'p1', 'p2'], () => c.post(`/rooms/${room.id}/polls`, P('t1').token, {
    txn_id: txnId(), question: 'Welcher Termin?', options: ['Montag', 'Dienstag'],
  }))).result.json.message;
  r = await step(['t1', 'p1', 'p2'], () => c.post(`/polls/${poll.id}/votes`, P('p1').token, { options: [1] }));
  const options = r.got[0].event.message.poll.options;
  assert.deepEqual(options.map((o) => [o.voter_ids, o.mine]), [[[], false], [[P('p1').id], false]]);
  const anon = (await step(['t1', 'p1', 'p2'], () => c.post(`/rooms/${room.id}/polls`, P('t1').token, {
    txn_id: txnId(), question: 'Geheim?', options: ['ja', 'nein'], anonymous: true,
  }))).result.json.message;
  r = await step(['t1', 'p1', 'p2'], () => c.post(`/polls/${anon.id}/votes`, P('p2').token, { options: [0] }));
  assert.equal(r.got[0].sender_id, '');
  assert.deepEqual(r.got[0].event.message.poll.options.map((o) => o.voter_ids), [[], []]);
  await step(['t1', 'p1', 'p2'], () => c.post(`/polls/${poll.id}/close`, P('t1').token));

  // Moderation.
  await step(['t1', 'p1', 'p2'], () => c.post(`/rooms/${room.id}/members/${P('p2').id}/mute`, P('t1').token, { muted: true }));
  await step(['t1', 'p1', 'p2'], () => c.post(`/rooms/${room.id}/lock`, P('t1').token, { locked: true }));
  await step(['t1', 'p1', 'p2'], () => c.post(`/rooms/${room.id}/lock`, P('t1').token, { locked: false }));
  await step(['t1', 'p1', 'p2'], () => c.put(`/rooms/${room.id}/retention`, P('t1').token, { retention_days: 365 }));

  // Members come and go: whoever joins hears of it, whoever leaves hears of
  // their leaving and nothing after it.
  await step(['t1', 'p1', 'p2', 'm1'], () => c.post(`/rooms/${room.id}/members`, P('t1').token, { user_ids: [P('m1').id] }));
  r = await step(['t1', 'p1', 'p2', 'm1'], () => c.del(`/rooms/${room.id}/members/${P('p2').id}`, P('t1').token));
  assert.equal(r.got[0].kind, 'member.left');
  await step(['t1', 'p1', 'm1'], () => c.send(room.id, P('t1').token, 'p2 ist in die 9a gewechselt'));
  await step(['t1', 'p1', 'm1'], () => c.del(`/messages/${m.id}`, P('p1').token));

  // A direct room.
  await step(['t1', 'p1'], () => c.room(P('t1').token, { school_id: A.id, kind: 'DIRECT', member_ids: [P('p1').id] }));
});

test('announcement channels: read status and confirmations are read by no one in particular', async () => {
  const ch = (await step(['t2', 'p1', 'm1'], () => c.room(P('t2').token, {
    school_id: A.id, kind: 'ANNOUNCEMENT', name: 'Elternbriefe', member_ids: [P('p1').id, P('m1').id],
  }))).result;
  const news = (await step(['t2', 'p1', 'm1'], () => c.send(ch.id, P('t2').token, 'Wandertag am Freitag'))).result;
  assert.equal(news.message.read_status.audience, 2);
  const r = await step(['t2', 'p1', 'm1'], () => c.post(`/rooms/${ch.id}/read`, P('m1').token, { position: '0', confirm_message_id: news.id }));
  assert.deepEqual(r.got.map((a) => a.kind), ['receipt', 'read.confirmed']);
  // An edit shows the message: m1 lists it as m1 confirmed it, the
  // announcement as nobody did, with the counts everybody sees.
  const x = await step(['t2', 'p1', 'm1'], () => c.patch(`/messages/${news.id}`, P('t2').token, { text: 'Wandertag am Freitag, 8 Uhr' }));
  assert.equal(x.got[0].event.message.read_status.confirmed_by_me, false);
  assert.equal(x.got[0].event.message.read_status.confirmed, 1);
  assert.equal(x.got[0].event.message.read_status.read, 1);
  assert.equal((await listed(ch.id, P('m1').token, x.got[0].position)).message.read_status.confirmed_by_me, true);
});

test('the roster follower\'s events are announced too, to the group\'s people', async () => {
  const from = head();
  const g = await api(`${s.url}/api/v1/schools/${A.id}/groups`, { method: 'POST', token: P('ad').token, body: { kind: 'CLASS', name: '7b', school_year: '2026/27' } });
  assert.equal(g.status, 201, g.text);
  const add = (user, role = 'MEMBER') => api(`${s.url}/api/v1/groups/${g.json.id}/members`, { method: 'POST', token: P('ad').token, body: { user_id: user, role } });
  assert.equal((await add(P('t2').id, 'LEADER')).status, 201);
  assert.equal((await add(P('p3').id)).status, 201);
  const roster = await until(async () => (await c.rooms(P('p3').token)).find((x) => x.group_id === g.json.id), { what: 'the class room' });
  await until(async () => (await c.get(`/rooms/${roster.id}`, P('t2').token)).json?.my_role === 'MODERATOR', { what: 't2 to lead it' });
  let to = head();
  let got = await announced(from, to);
  assert.deepEqual(got.map((a) => a.kind).sort(), ['member.joined', 'member.joined', 'room.created']);
  for (const a of got) {
    assert.equal(a.room_id, roster.id);
    assert.equal(a.sender_id, '', 'the service\'s own events');
    await sameAsListed(a, ['t2', 'p3']);
    // The follower may apply the group's changes in one transaction or in
    // several: the audience is the group's people as far as they are in by
    // then, each joining member at least in their own joining.
    assert.ok(a.members.every((id) => ids('t2', 'p3').includes(id)), `${a.kind} goes to the group's people only`);
    if (a.kind === 'member.joined') assert.ok(a.members.includes(a.event.user_id));
  }
  assert.deepEqual([...got.at(-1).members].sort(), ids('t2', 'p3'));

  // Leaving the group: p3 hears of the leaving, then of nothing more.
  const leftFrom = to;
  const rm = await api(`${s.url}/api/v1/groups/${g.json.id}/members/${P('p3').id}`, { method: 'DELETE', token: P('ad').token });
  assert.equal(rm.status, 200, rm.text);
  await until(async () => (await c.get(`/rooms/${roster.id}`, P('p3').token)).status === 404, { what: 'p3 to leave' });
  to = head();
  got = await announced(leftFrom, to);
  assert.deepEqual(got.map((a) => a.kind), ['member.left']);
  assert.deepEqual([...got[0].members].sort(), ids('t2', 'p3'));
  const after = (await step(['t2'], () => c.send(roster.id, P('t2').token, 'Willkommen, 7b'))).got;
  assert.ok(!after[0].members.includes(P('p3').id));
});

test('a burst of concurrent appends from several clients announces each position exactly once', async () => {
  const r = await c.room(P('t1').token, {
    school_id: A.id, kind: 'GROUP', name: 'Pausenhof', member_ids: [P('p1').id, P('p2').id, P('m1').id],
  });
  const first = await c.send(r.id, P('t1').token, 'los');
  const from = head();
  const sends = [];
  const senders = ['t1', 'p1', 'p2', 'm1'];
  const jobs = [];
  for (const who of senders) {
    jobs.push((async () => {
      for (let i = 0; i < 15; i++) sends.push(await c.send(r.id, P(who).token, `${who} ${i}`));
    })());
  }
  jobs.push((async () => {
    for (const key of ['a', 'b', 'c', 'd', 'e']) {
      assert.equal((await c.post(`/messages/${first.id}/reactions`, P('p1').token, { key })).status, 200);
    }
  })());
  jobs.push((async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal((await c.post(`/rooms/${r.id}/members`, P('t1').token, { user_ids: [P('t2').id] })).status, 200);
      assert.equal((await c.del(`/rooms/${r.id}/members/${P('t2').id}`, P('t1').token)).status, 200);
    }
  })());
  jobs.push((async () => {
    for (let i = 0; i < 5; i++) {
      const h = (await c.events(r.id, P('m1').token)).head;
      await c.post(`/rooms/${r.id}/read`, P('m1').token, { position: h });
    }
  })());
  jobs.push((async () => {
    for (let i = 0; i < 5; i++) await c.send(room.id, P('p1').token, `nebenher ${i}`);
  })());
  // B's people at the same time: their positions belong to the range too.
  jobs.push((async () => {
    const nb = await c.room(B.people.x1.token, { school_id: B.id, kind: 'GROUP', name: 'Zeitgleich', member_ids: [B.people.x2.id] });
    for (let i = 0; i < 10; i++) await c.send(nb.id, B.people.x2.token, `x2 ${i}`);
  })());
  await Promise.all(jobs);
  const to = head();
  const got = await announced(from, to);
  // Every send of the burst is among them, with its audience.
  const byPosition = new Map(got.map((a) => [a.position, a]));
  assert.equal(sends.length, 60);
  for (const m of sends) {
    const a = byPosition.get(m.position);
    assert.ok(a, `send at ${m.position} announced`);
    assert.equal(a.event_id, m.id);
    assert.deepEqual(a.event.message.text, m.message.text);
  }
  // Nobody outside a room hears of it: neither A's pupil o1 in no room nor
  // B's people in A's rooms, nor A's people in B's.
  for (const a of announcements()) {
    assert.ok(!a.members.includes(P('o1').id), `o1 is in no room (${a.kind} at ${a.position})`);
    const other = a.school_id === A.id ? Object.values(B.people) : Object.values(A.people);
    for (const p of other) assert.ok(!a.members.includes(p.id), `${a.kind} at ${a.position} stays in its school`);
  }
});

// A psql session of its own, statement by statement, to hold locks while
// the daemons work. run() resolves with what the statement wrote to stderr.
function session() {
  const p = spawn('psql', [s.dbUrl, '-qAt'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { err += d; });
  let n = 0;
  return {
    async run(sql) {
      const mark = `statement-done-${n++}`;
      const from = err.length;
      p.stdin.write(`${sql};\n\\echo ${mark}\n`);
      await until(() => out.includes(mark), { what: sql, timeoutMs: 20000 });
      return err.slice(from);
    },
    close() { p.stdin.end(); },
  };
}

test('a room changed while a send holds the log head: both go through, no deadlock', async () => {
  const r = await c.room(P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'Sperrprobe', member_ids: [P('p1').id] });
  const changes = [
    () => c.post(`/rooms/${r.id}/lock`, P('t1').token, { locked: true }),
    () => c.put(`/rooms/${r.id}/retention`, P('t1').token, { retention_days: 30 }),
  ];
  for (const change of changes) {
    // This session is an append in the middle of its transaction: it holds
    // the log head and is about to move the room's head.
    const db = session();
    try {
      assert.equal(await db.run('BEGIN; UPDATE messaging.log_head SET position = position'), '');
      const reply = change();
      await until(() => psql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") === '1',
        { what: 'the change to wait for the log head' });
      assert.equal(await db.run(`UPDATE messaging.rooms SET last_position = last_position WHERE id = '${r.id}'`), '');
      assert.equal(await db.run('ROLLBACK'), '');
      const res = await reply;
      assert.equal(res.status, 200, res.text);
    } finally {
      db.close();
    }
  }
});

// Sends of every shape: the reply is the event exactly as ListEvents shows
// it to the sender, and the announcement carries the same (a new message
// has nothing that differs between readers).
test('a send answers its event as ListEvents shows it, and announces the same', async () => {
  const r = await c.room(P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'Formen', member_ids: [P('p1').id, P('p2').id] });
  const q = await c.send(r.id, P('t1').token, 'Worauf antwortest du?');
  const upper = (id) => id.toUpperCase();
  const shapes = [
    ['t1', 'Klammern {a,b} und "Zitat", Backslash \\ und \\" am Ende\nZeile 2\tTab', {}],
    ['p1', 'NULL', {}],
    ['p2', '  Leerzeichen vorn und hinten  ', {}],
    ['t1', 'مرحبا 👋 Grüße, ğ ş ı', { mentions: [upper(P('p1').id), P('p2').id, P('p1').id] }],
    ['p1', 'Antwort mit Anhängen', {
      reply_to: upper(q.id),
      attachments: [
        { file_id: '01A2025C-0000-7000-8000-0000000000F1', name: 'Bild {1}.png', media_type: 'image/png', size_bytes: '1234' },
        { file_id: '01a2025c-0000-7000-8000-0000000000f2', name: 'Notiz "b".txt', media_type: 'text/plain', size_bytes: '0' },
      ],
    }],
  ];
  for (const [who, text, extra] of shapes) {
    const { result: m, got } = await step(['t1', 'p1', 'p2'], () => c.send(r.id, P(who).token, text, extra));
    assert.equal(m.message.text, text);
    assert.deepEqual(m, await listed(r.id, P(who).token, m.position), `the reply to "${text}" as ListEvents shows it`);
    assert.deepEqual(got[0].event, m, `the announcement of "${text}" holds the reply`);
  }
  // Ids come back in lower case, mentions once each.
  const all = (await c.events(r.id, P('p1').token, '?messages_only=true&limit=2')).events;
  assert.deepEqual(all[0].message.mentions, [P('p1').id, P('p2').id]);
  assert.equal(all[1].message.reply_to, q.id);
  assert.equal(all[1].message.attachments[0].file_id, '01a2025c-0000-7000-8000-0000000000f1');

  // An announcement channel: read status for its audience.
  const ch = await c.room(P('t2').token, { school_id: A.id, kind: 'ANNOUNCEMENT', name: 'Aushang', member_ids: [P('p1').id, P('p2').id, P('m1').id] });
  const { result: news, got } = await step(['t2', 'p1', 'p2', 'm1'], () => c.send(ch.id, P('t2').token, 'Sportfest am Montag'));
  assert.deepEqual(news.message.read_status, { audience: 3, read: 0, confirmed: 0, confirmed_by_me: false });
  assert.deepEqual(news, await listed(ch.id, P('t2').token, news.position));
  assert.deepEqual(got[0].event, news);

  // A poll.
  const poll = await step(['t1', 'p1', 'p2'], () => c.post(`/rooms/${r.id}/polls`, P('p2').token, {
    txn_id: txnId(), question: 'Welcher Tag?', options: ['Mo', 'Di'], closes_at: new Date(Date.now() + 86400000).toISOString(),
  }));
  assert.equal(poll.result.status, 201, poll.result.text);
  assert.deepEqual(poll.result.json, await listed(r.id, P('p2').token, poll.result.json.position));
  assert.deepEqual(poll.got[0].event, poll.result.json);
});

// Connections that ran a statement like `like` since `since` and finished it.
const ran = (since, like) => Number(psql(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() `
  + `AND state = 'idle' AND query_start > '${since}' AND query LIKE '${like}'`));
const waitingSend = () => Number(psql(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() `
  + `AND wait_event_type = 'Lock' AND query LIKE 'WITH x AS%messaging.log_head%'`));

// Transactions that appended the events after `from`, by how many events each.
function perTransaction(from) {
  return psql(`SELECT count(*) FROM messaging.events WHERE position > ${from} GROUP BY xmin::text ORDER BY 1`)
    .split('\n').filter(Boolean).map(Number);
}

test('sends waiting for the log head are appended together: twins answer once, a taken txn_id fails no other', async () => {
  const r = await c.room(P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'Warteschlange', member_ids: [P('p1').id, P('p2').id] });
  const send = (who, txn, text) => c.post(`/rooms/${r.id}/messages`, P(who).token, { txn_id: txn, text });
  const T = [txnId(), txnId(), txnId()];

  // Twins in one batch: the first send waits for the log head, which a
  // session holds; three more queue behind it, two of them the same send.
  let db = session();
  let from = head();
  let since;
  let first;
  let queued;
  try {
    assert.equal(await db.run('BEGIN; UPDATE messaging.log_head SET position = position'), '');
    first = send('t1', T[0], 'zuerst');
    await until(() => waitingSend() === 1, { what: 'the first send to wait for the log head' });
    since = psql('SELECT clock_timestamp()');
    queued = [send('p1', T[1], 'Zwilling'), send('p1', T[1], 'Zwilling'), send('p2', T[2], 'daneben')];
    await until(() => ran(since, 'SELECT r.id::text, r.school_id::text, r.kind%') === 3, { what: 'three sends to queue' });
    assert.equal(await db.run('ROLLBACK'), '');
  } finally {
    db.close();
  }
  let res = await Promise.all([first, ...queued]);
  for (const x of res) assert.equal(x.status, 201, x.text);
  assert.equal(res[1].json.id, res[2].json.id, 'the twins answer one event');
  assert.deepEqual(res[1].json, res[2].json);
  let to = head();
  assert.equal(to - from, 3n, 'three events: the twin appended once');
  assert.deepEqual(perTransaction(from), [1, 2], 'the queued sends went in one statement');
  await announced(from, to);

  // A taken txn_id in a batch: the first send's retry queues behind it
  // (the first is not committed when the retry looks), then the batch's
  // statement meets the committed txn_id; each of its sends goes again on
  // its own, the retry answers the first send's event.
  db = session();
  from = head();
  const U = [txnId(), txnId(), txnId()];
  try {
    assert.equal(await db.run('BEGIN; UPDATE messaging.log_head SET position = position'), '');
    first = send('t1', U[0], 'Original');
    await until(() => waitingSend() === 1, { what: 'the first send to wait for the log head' });
    since = psql('SELECT clock_timestamp()');
    queued = [send('t1', U[0], 'Wiederholung'), send('p1', U[1], 'eins'), send('p2', U[2], 'zwei')];
    await until(() => ran(since, 'SELECT r.id::text, r.school_id::text, r.kind%') === 3, { what: 'three sends to queue' });
    assert.equal(await db.run('ROLLBACK'), '');
  } finally {
    db.close();
  }
  res = await Promise.all([first, ...queued]);
  for (const x of res) assert.equal(x.status, 201, x.text);
  assert.deepEqual(res[1].json, res[0].json, 'the retry answers the first send');
  assert.equal(res[0].json.message.text, 'Original');
  to = head();
  assert.equal(to - from, 3n);
  const got = await announced(from, to);
  assert.deepEqual(got.map((a) => a.event_id).sort(), [res[0].json.id, res[2].json.id, res[3].json.id].sort());
  const texts = (await c.events(r.id, P('t1').token, '?messages_only=true&limit=10')).events.map((e) => e.message.text);
  assert.deepEqual(texts.filter((t) => ['Original', 'Wiederholung', 'eins', 'zwei'].includes(t)).sort(), ['Original', 'eins', 'zwei']);
});

test('a batch is announced together, in position order, across rooms; a send refused among its sends changes nothing', async () => {
  const r = await c.room(P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'Stapel', member_ids: [P('p1').id, P('p2').id] });
  const ch = await c.room(P('t1').token, { school_id: A.id, kind: 'ANNOUNCEMENT', name: 'Rundbrief', member_ids: [P('p1').id, P('m1').id] });
  const send = (who, room, body) => c.post(`/rooms/${room.id}/messages`, P(who).token, { txn_id: txnId(), ...body });
  const db = session();
  const from = head();
  let first;
  let queued;
  try {
    assert.equal(await db.run('BEGIN; UPDATE messaging.log_head SET position = position'), '');
    first = send('t1', r, { text: 'vorneweg' });
    await until(() => waitingSend() === 1, { what: 'the first send to wait for the log head' });
    const since = psql('SELECT clock_timestamp()');
    // Two sends that queue for the next batch, in two rooms (one of them an
    // announcement channel, with a mention), and one the service refuses
    // before it could queue.
    queued = [
      send('p1', r, { text: 'dazwischen' }),
      send('p2', r, { text: '<b>fett</b>' }),
      send('t1', ch, { text: 'Elternabend am Montag', mentions: [P('m1').id] }),
    ];
    // (the channel's send checks its mention last)
    await until(() => ran(since, 'SELECT r.id::text, r.school_id::text, r.kind%')
      + ran(since, 'SELECT count(*) FROM messaging.room_members%') === 3, { what: 'three sends to be checked' });
    const refused = await queued[1];
    assert.equal(refused.status, 400, refused.text);
    assert.equal(refused.json.error.code, 'messaging.text_html');
    assert.equal(await db.run('ROLLBACK'), '');
  } finally {
    db.close();
  }
  const res = await Promise.all([first, queued[0], queued[2]]);
  for (const x of res) assert.equal(x.status, 201, x.text);
  const to = head();
  assert.equal(to - from, 3n, 'the refused send appended nothing');
  assert.deepEqual(perTransaction(from), [1, 2], 'the two queued sends went in one statement');
  const got = await announced(from, to);
  // The first send first; the two queued ones in the order they queued.
  assert.equal(got[0].event_id, res[0].json.id);
  assert.deepEqual(got.slice(1).map((a) => a.event_id).sort(), [res[1].json.id, res[2].json.id].sort());
  // Arrival order is position order: a batch's announcements go out
  // together, after those of the batch before.
  const arrived = announcements().filter((x) => BigInt(x.position) > from && BigInt(x.position) <= to).map((x) => x.position);
  assert.deepEqual(arrived, got.map((a) => a.position));
  for (const a of got) {
    const reply = res.find((x) => x.json.id === a.event_id).json;
    assert.deepEqual(a.event, reply);
    const room = a.event_id === res[2].json.id ? ch : r;
    assert.equal(a.room_id, room.id);
    assert.deepEqual(a.event, byNoOne(await listed(room.id, P('t1').token, a.position)));
    assert.deepEqual([...a.members].sort(), room === ch ? ids('t1', 'p1', 'm1') : ids('t1', 'p1', 'p2'));
  }
  assert.deepEqual(res[2].json.message.mentions, [P('m1').id]);
  assert.deepEqual(res[2].json.message.read_status, { audience: 2, read: 0, confirmed: 0, confirmed_by_me: false });
  const texts = (await c.events(r.id, P('t1').token, '?messages_only=true&limit=10')).events.map((e) => e.message.text);
  assert.deepEqual(texts, ['vorneweg', 'dazwischen']);
});

test('many concurrent sends with racing retries: one message each, contiguous positions, each announced once', async () => {
  const senders = ['t1', 'p1', 'p2', 'm1', 't2'];
  const r = await c.room(P('t1').token, { school_id: A.id, kind: 'GROUP', name: 'Ansturm', member_ids: senders.slice(1).map((a) => P(a).id) });
  const from = head();
  const sends = [];
  for (const who of senders) {
    for (let i = 0; i < 12; i++) {
      const body = { txn_id: txnId(), text: `${who} ${i}` };
      // Each send goes out three times at once, as a client retrying on a
      // bad connection might.
      const tries = [1, 2, 3].map(() => c.post(`/rooms/${r.id}/messages`, P(who).token, body));
      sends.push({ who, body, tries: Promise.all(tries) });
    }
  }
  const replies = new Map();
  for (const x of sends) {
    const res = await x.tries;
    for (const y of res) assert.equal(y.status, 201, y.text);
    assert.ok(res.every((y) => y.json.id === res[0].json.id), `${x.body.text}: every try answers one event`);
    assert.equal(res[0].json.message.text, x.body.text);
    replies.set(res[0].json.id, res[0].json);
  }
  assert.equal(replies.size, sends.length);
  const to = head();
  assert.equal(to - from, BigInt(sends.length), 'one event per send, positions contiguous');
  const got = await announced(from, to);
  assert.deepEqual(got.map((a) => a.event_id).sort(), [...replies.keys()].sort(), 'each send announced once');
  for (const a of got) {
    assert.deepEqual(a.event, replies.get(a.event_id));
    assert.deepEqual([...a.members].sort(), ids(...senders));
  }
  const listedAll = (await c.events(r.id, P('t1').token, `?after=${from}&limit=500`)).events;
  assert.deepEqual(listedAll.map((e) => BigInt(e.position)), Array.from({ length: sends.length }, (_, i) => from + 1n + BigInt(i)));
});
