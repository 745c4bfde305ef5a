// kill -9 of the identity daemon: the gateway answers 503 quickly, /readyz
// turns not-ready, and everything recovers by itself once it is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSuite, api, until } from '../lib/kreide.mjs';

let s;
before(async () => { s = await startSuite({ name: 'fault', env: { KREIDE_RPC_TIMEOUT_MS: '2000' } }); });
after(async () => s && s.stop());

test('identity killed with SIGKILL: 503 within the deadline, then recovery', async () => {
  const op = s.token({ roles: ['operator'] });
  const created = await api(`${s.url}/api/v1/schools`, { method: 'POST', token: op, body: { name: 'Kita Fault', kind: 'KITA' } });
  assert.equal(created.status, 201);
  const path = `${s.url}/api/v1/schools/${created.json.id}`;

  const r = await s.identity.stop('SIGKILL');
  assert.equal(r.signal, 'SIGKILL');

  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    const down = await api(path);
    const took = Date.now() - t0;
    assert.equal(down.status, 503, down.text);
    assert.equal(down.json.error.code, 'rpc.unavailable');
    assert.ok(took < 2500, `answered after ${took} ms, deadline is 2000 ms`);
  }
  const ready = await api(`${s.url}/readyz`);
  assert.equal(ready.status, 503);
  assert.equal(ready.json.ready, false);
  assert.equal(ready.json.services.identity.ready, false);
  assert.equal((await api(`${s.url}/healthz`)).status, 200, 'the gateway itself stays alive');

  s.identity.start();
  await until(async () => (await api(`${s.url}/readyz`)).status === 200, { what: 'readyz after restart', timeoutMs: 15000 });
  const back = await api(path);
  assert.equal(back.status, 200);
  assert.equal(back.json.name, 'Kita Fault');
});

test('requests in flight when identity dies get an answer, never a hang', async () => {
  const op = s.token({ roles: ['operator'] });
  const inflight = [];
  for (let i = 0; i < 40; i++)
    inflight.push(api(`${s.url}/api/v1/schools`, { method: 'POST', token: op, body: { name: `Load ${i}`, kind: 'SCHOOL' } }));
  await s.identity.stop('SIGKILL');
  const t0 = Date.now();
  const results = await Promise.all(inflight);
  assert.ok(Date.now() - t0 < 4000, 'in-flight requests were held too long');
  for (const r of results) assert.ok([201, 503, 504].includes(r.status), `unexpected ${r.status} ${r.text}`);
  s.identity.start();
  await until(async () => (await api(`${s.url}/readyz`)).status === 200, { what: 'recovery', timeoutMs: 15000 });
  // Every request answered 201 is really stored.
  const names = new Set();
  let cursor = '';
  do {
    const q = new URLSearchParams({ 'page.limit': '500', name_prefix: 'Load ' });
    if (cursor) q.set('page.cursor', cursor);
    const l = await api(`${s.url}/api/v1/schools?${q}`, { token: op });
    l.json.schools.forEach((x) => names.add(x.name));
    cursor = l.json.page.next_cursor;
  } while (cursor);
  for (const r of results.filter((x) => x.status === 201)) assert.ok(names.has(r.json.name), `${r.json.name} acknowledged but lost`);
});
