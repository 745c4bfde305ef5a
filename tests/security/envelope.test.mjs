// A service must reject a caller identity forged by anyone who can reach its
// socket: envelopes that are not sealed with the internal key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startSuite, api } from '../lib/kreide.mjs';

let s;
before(async () => { s = await startSuite({ name: 'envelope' }); });
after(async () => s && s.stop());

const create = 'kreide.identity.Identity/CreateSchool';

test('an unsealed envelope claiming an operator is rejected', () => {
  const r = s.rpc(create, '{"name":"Forged Unsealed","kind":"SCHOOL"}', { roles: ['operator'], seal: false });
  assert.equal(r.status, 'UNAUTHENTICATED');
  assert.equal(r.error_code, 'rpc.bad_seal');
});

test('an envelope sealed with another key is rejected', () => {
  const other = `t1:${randomBytes(32).toString('base64')}`;
  const r = s.rpc(create, '{"name":"Forged Other Key","kind":"SCHOOL"}', { roles: ['operator'], keys: other });
  assert.equal(r.status, 'UNAUTHENTICATED');
  const unknown = `zz:${randomBytes(32).toString('base64')}`;
  assert.equal(s.rpc(create, '{"name":"Forged Unknown Kid","kind":"SCHOOL"}', { roles: ['operator'], keys: unknown }).status,
    'UNAUTHENTICATED');
});

test('a correctly sealed envelope works (the probe itself is sound)', () => {
  const r = s.rpc(create, '{"name":"Sealed Properly","kind":"SCHOOL"}', { roles: ['operator'] });
  assert.equal(r.status, 'OK');
  assert.equal(r.body.name, 'Sealed Properly');
});

test('a sealed envelope still obeys the policy', () => {
  const r = s.rpc(create, '{"name":"Not An Operator","kind":"SCHOOL"}', { roles: ['teacher'] });
  assert.equal(r.status, 'PERMISSION_DENIED');
});

test('nothing forged was stored', async () => {
  const op = s.token({ roles: ['operator'] });
  const l = await api(`${s.url}/api/v1/schools?page.limit=500`, { token: op });
  assert.equal(l.status, 200);
  const names = l.json.schools.map((x) => x.name);
  assert.deepEqual(names, ['Sealed Properly']);
});
