// kill -9 of the messaging daemon while people send: every acknowledged
// message is kept, retries with the same txn_id after the restart store
// nothing twice, and positions stay gapless in what a reader sees.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSuite, api, until } from '../lib/kreide.mjs';
import { client, makeSchool } from '../lib/messaging.mjs';

let s;
before(async () => { s = await startSuite({ name: 'msgfault', env: { KREIDE_RPC_TIMEOUT_MS: '2000' } }); });
after(async () => s && s.stop());

test('messaging killed mid-send: acknowledged messages survive, retries do not duplicate', async () => {
  const op = s.token({ roles: ['operator'] });
  const c = client(s);
  const A = await makeSchool(s, op, 'Schule Sturm', { t: 'teacher', p: 'pupil' });
  const room = await c.room(A.people.t.token, { school_id: A.id, kind: 'GROUP', name: 'Last', member_ids: [A.people.p.id] });

  const sends = [];
  for (let i = 0; i < 60; i++) {
    const who = i % 2 ? A.people.t : A.people.p;
    const body = { txn_id: `load-${i}`, text: `Nachricht ${i}` };
    sends.push({ who, body, res: c.post(`/rooms/${room.id}/messages`, who.token, body) });
  }
  const killed = await s.messaging.stop('SIGKILL');
  assert.equal(killed.signal, 'SIGKILL');
  const results = await Promise.all(sends.map((x) => x.res));
  for (const r of results) assert.ok([201, 503, 504].includes(r.status), `unexpected ${r.status} ${r.text}`);

  s.messaging.start();
  await until(async () => (await api(`${s.url}/readyz`)).status === 200, { what: 'messaging back', timeoutMs: 15000 });

  // The clients retry everything (as they would when unsure); acknowledged
  // sends answer their first event.
  const retried = [];
  for (const x of sends) {
    const r = await c.post(`/rooms/${room.id}/messages`, x.who.token, x.body);
    assert.equal(r.status, 201, r.text);
    retried.push(r.json);
  }
  results.forEach((r, i) => {
    if (r.status === 201) assert.equal(retried[i].id, r.json.id, `${sends[i].body.txn_id} acknowledged, then stored again`);
  });
  const all = [];
  let page = await c.events(room.id, A.people.p.token, '?messages_only=true&after=0&limit=500');
  all.push(...page.events);
  const texts = all.map((e) => e.message.text);
  assert.equal(texts.length, 60);
  assert.equal(new Set(texts).size, 60);
  // Positions only grow, and the room's head is the last of them.
  const pos = all.map((e) => BigInt(e.position));
  for (let i = 1; i < pos.length; i++) assert.ok(pos[i] > pos[i - 1]);
  page = await c.events(room.id, A.people.p.token);
  assert.equal(BigInt(page.head), BigInt(page.events.at(-1).position));
});
