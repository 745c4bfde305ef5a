// Who may issue one-time codes, and brute force against codes and
// passwords: every refusal has the right status and changes nothing; delays
// grow per account, an address is blocked after many failures, and neither
// lasts for good.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startSuite, api, until, redisDb } from '../lib/kreide.mjs';

let s;
let op;
const ids = {};
const t = {};

// Small limits so the test sees every stage within seconds.
const THROTTLE = {
  KREIDE_THROTTLE_ACCOUNT_FREE: '3',
  KREIDE_THROTTLE_ACCOUNT_BASE_S: '1',
  KREIDE_THROTTLE_ADDR_LIMIT: '12',
  KREIDE_THROTTLE_ADDR_WINDOW_S: '600',
  KREIDE_THROTTLE_ADDR_BLOCK_S: '2',
};

const sql = (query) =>
  execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', query]).toString().trim();
const codeRows = () => sql('SELECT count(*) FROM identity.one_time_codes');

before(async () => {
  s = await startSuite({ name: 'credsec', env: { KREIDE_REDIS_URL: redisDb(6), ...THROTTLE } });
  op = s.token({ roles: ['operator'] });
  const carrier = await post('/api/v1/carriers', { name: 'Stadt Deichhausen' });
  ids.carrier = carrier.json.id;
  ids.a = (await post('/api/v1/schools', { name: 'Schule A', kind: 'SCHOOL', carrier_id: ids.carrier })).json.id;
  ids.b = (await post('/api/v1/schools', { name: 'Schule B', kind: 'SCHOOL' })).json.id;
  const at = (school, ...roles) => roles.map((role) => ({ school_id: school, role }));
  ids.adminA = (await user('admin.a', at(ids.a, 'SCHOOL_ADMIN'))).id;
  ids.adminB = (await user('admin.b', at(ids.b, 'SCHOOL_ADMIN'))).id;
  ids.teacher = (await user('teacher.a', at(ids.a, 'TEACHER'))).id;
  ids.pupilIn = (await user('pupil.in', at(ids.a, 'PUPIL'))).id;
  ids.pupilOut = (await user('pupil.out', at(ids.a, 'PUPIL'))).id;
  ids.parent = (await user('parent.a', at(ids.a, 'PARENT'))).id;
  ids.pupilB = (await user('pupil.b', at(ids.b, 'PUPIL'))).id;
  ids.victim = (await user('victim.v', at(ids.a, 'PUPIL'))).id;
  ids.bystander = (await user('bystander.w', at(ids.a, 'PUPIL'))).id;
  const cls = await post(`/api/v1/schools/${ids.a}/groups`, { kind: 'CLASS', name: '4b' });
  for (const [uid, role] of [[ids.teacher, 'LEADER'], [ids.pupilIn, 'MEMBER']])
    assert.equal((await post(`/api/v1/groups/${cls.json.id}/members`, { user_id: uid, role })).status, 201);
  const other = await post(`/api/v1/schools/${ids.a}/groups`, { kind: 'CLASS', name: '4c' });
  assert.equal((await post(`/api/v1/groups/${other.json.id}/members`, { user_id: ids.pupilOut, role: 'MEMBER' })).status, 201);
  t.adminA = s.token({ sub: ids.adminA, schools: [`${ids.a}:school_admin`] });
  t.adminB = s.token({ sub: ids.adminB, schools: [`${ids.b}:school_admin`] });
  t.teacher = s.token({ sub: ids.teacher, schools: [`${ids.a}:teacher`] });
  t.pupil = s.token({ sub: ids.pupilIn, schools: [`${ids.a}:pupil`] });
  t.parent = s.token({ sub: ids.parent, schools: [`${ids.a}:parent`] });
  t.carrier = s.token({ roles: [`carrier_admin:${ids.carrier}`] });
});
after(async () => s && s.stop());

function post(path, body, token = op) {
  return api(`${s.url}${path}`, { method: 'POST', token, body });
}

async function user(username, contexts) {
  const r = await post('/api/v1/users', { username, given_name: 'Vorname', family_name: 'Nachname', contexts });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

const issue = (userId, school, purpose, token) => post(`/api/v1/users/${userId}/codes`, { school_id: school, purpose }, token);
const enroll = (username, code, password = 'lange sichere passphrase', extra = {}) =>
  api(`${s.url}/api/v1/enroll`, { method: 'POST', body: { username, code, password, ...extra } });

// Refused with `status` and `code`, and no code row was written.
async function refused(promise, status, code) {
  const rows = codeRows();
  const r = await promise;
  assert.equal(r.status, status, r.text);
  assert.equal(r.json.error.code, code);
  assert.equal(codeRows(), rows);
}

test('pupils and parents never issue codes', async () => {
  for (const token of [t.pupil, t.parent]) {
    await refused(issue(ids.pupilIn, ids.a, 'RESET', token), 403, 'identity.forbidden');
    await refused(issue(ids.pupilOut, ids.a, 'ENROLLMENT', token), 403, 'identity.forbidden');
  }
  await refused(issue(ids.pupilIn, ids.a, 'RESET', t.pupil), 403, 'identity.forbidden'); // not even for themselves
  await refused(issue(ids.pupilIn, ids.a, 'RESET', null), 401, 'auth.required');
});

test('a teacher issues reset codes only for pupils of groups they lead', async () => {
  await refused(issue(ids.pupilOut, ids.a, 'RESET', t.teacher), 403, 'identity.forbidden');
  await refused(issue(ids.pupilIn, ids.a, 'ENROLLMENT', t.teacher), 403, 'identity.forbidden');
  await refused(issue(ids.adminA, ids.a, 'RESET', t.teacher), 403, 'identity.forbidden');
  await refused(issue(ids.pupilB, ids.b, 'RESET', t.teacher), 403, 'identity.forbidden');
  const ok = await issue(ids.pupilIn, ids.a, 'RESET', t.teacher);
  assert.equal(ok.status, 201, ok.text);
});

test("another school's admin is refused", async () => {
  // Naming their own school: the pupil has no context there.
  await refused(issue(ids.pupilIn, ids.b, 'ENROLLMENT', t.adminB), 404, 'identity.not_found');
  // Naming the other school: no standing there.
  await refused(issue(ids.pupilIn, ids.a, 'ENROLLMENT', t.adminB), 403, 'identity.forbidden');
  const own = await issue(ids.pupilB, ids.b, 'ENROLLMENT', t.adminB);
  assert.equal(own.status, 201, own.text);
});

test("a carrier admin issues codes for the school admins of the carrier's schools only", async () => {
  await refused(issue(ids.pupilIn, ids.a, 'ENROLLMENT', t.carrier), 403, 'identity.forbidden');
  await refused(issue(ids.adminB, ids.b, 'ENROLLMENT', t.carrier), 403, 'identity.forbidden');
  const ok = await issue(ids.adminA, ids.a, 'ENROLLMENT', t.carrier);
  assert.equal(ok.status, 201, ok.text);
});

test('malformed input is refused without a code', async () => {
  await refused(issue(ids.pupilIn, ids.a, 'SOMETHING', t.adminA), 400, 'request.invalid');
  await refused(issue(ids.pupilIn, ids.a, 'CODE_PURPOSE_UNSPECIFIED', t.adminA), 400, 'identity.invalid_purpose');
  await refused(issue('not-a-uuid', ids.a, 'RESET', t.adminA), 400, 'identity.invalid_id');
  await refused(issue('01890000-0000-7000-8000-000000000000', ids.a, 'RESET', t.adminA), 404, 'identity.not_found');
});

test('repeated wrong passwords for one account are throttled (Authenticate)', async () => {
  const auth = (pw) => s.rpc('kreide.identity.Identity/Authenticate',
    JSON.stringify({ username: 'admin.a', password: pw, client_address: '192.0.2.44' }));
  for (let i = 0; i < 3; i++) assert.equal(auth(`falsch ${i}`).status, 'UNAUTHENTICATED');
  // The delays double from 1 s; on a slow build one attempt can outlast the
  // first of them, so keep failing until an attempt lands inside a delay.
  let r;
  for (let i = 0; i < 8; i++) {
    r = auth(`noch einmal falsch ${i}`);
    if (r.status !== 'UNAUTHENTICATED') break;
  }
  assert.equal(r.status, 'RESOURCE_EXHAUSTED', JSON.stringify(r));
  assert.equal(r.error_code, 'identity.throttled');
  assert.match(r.message, /try again in \d+ seconds/);
});

test('without Redis, enrollment and sign-in are refused rather than unthrottled', async () => {
  const bare = await startSuite({ name: 'credsec-noredis', env: { KREIDE_REDIS_URL: '' } });
  try {
    const r = await api(`${bare.url}/api/v1/enroll`, {
      method: 'POST', body: { username: 'whoever', code: 'AAAA-AAAA-AAAA', password: 'lange sichere passphrase' },
    });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.error.code, 'identity.throttle_unavailable');
    const a = bare.rpc('kreide.identity.Identity/Authenticate', JSON.stringify({ username: 'whoever', password: 'x' }));
    assert.equal(a.status, 'UNAVAILABLE');
  } finally {
    await bare.stop();
  }
});

// Seconds to wait from a throttled answer.
function retryAfter(r) {
  assert.equal(r.status, 429, r.text);
  assert.equal(r.json.error.code, 'identity.throttled');
  const m = /try again in (\d+) seconds/.exec(r.json.error.message);
  assert.ok(m, r.json.error.message);
  return Number(m[1]);
}

const unchanged = (id) => {
  assert.equal(sql(`SELECT count(*) FROM identity.users WHERE id = '${id}' AND password_hash IS NULL`), '1');
  assert.equal(sql(`SELECT count(*) FROM identity.one_time_codes WHERE user_id = '${id}' AND used_at IS NULL`), '1');
};

test('brute force on codes: growing delays per account, then the address is blocked, never for good', async () => {
  const victimCode = (await issue(ids.victim, ids.a, 'ENROLLMENT', t.adminA)).json.code;
  const bystanderCode = (await issue(ids.bystander, ids.a, 'ENROLLMENT', t.adminA)).json.code;
  const wrong = 'AAAA-AAAA-AAAA';

  // Three failures are free (KREIDE_THROTTLE_ACCOUNT_FREE=3) ...
  for (let i = 0; i < 3; i++) {
    const r = await enroll('victim.v', wrong);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.code, 'identity.code_invalid');
  }
  // ... then the account waits, even with the right code, and nothing changes.
  const first = retryAfter(await enroll('victim.v', victimCode));
  assert.ok(first >= 1 && first <= 2, `first delay ${first}`);
  unchanged(ids.victim);
  // After the wait one more wrong guess makes the next wait longer.
  await until(async () => (await enroll('victim.v', wrong)).status === 400, { what: 'the first delay to pass', timeoutMs: 10000, intervalMs: 200 });
  const second = retryAfter(await enroll('victim.v', wrong));
  assert.ok(second > first, `delays grow: ${first} then ${second}`);
  unchanged(ids.victim);

  // Another user name from the same address still works ...
  let failures = 4;
  for (let n = 0; failures < 12; n++) {
    for (let i = 0; i < 2 && failures < 12; i++, failures++) {
      const r = await enroll(`guess.${n}`, wrong);
      assert.equal(r.status, 400, `failure ${failures + 1}: ${r.text}`);
    }
  }
  // ... until the address limit (KREIDE_THROTTLE_ADDR_LIMIT=12): now even the
  // right code of an untouched account waits, and a client cannot dodge by
  // naming another address.
  retryAfter(await enroll('bystander.w', bystanderCode));
  const dodge = await enroll('bystander.w', bystanderCode, undefined, { client_address: '203.0.113.9' });
  assert.equal(dodge.status, 400, dodge.text);
  assert.equal(dodge.json.error.field, 'client_address');
  unchanged(ids.bystander);

  // Blocks end (KREIDE_THROTTLE_ADDR_BLOCK_S=2): no permanent lockout.
  const ok = await until(async () => {
    const r = await enroll('bystander.w', bystanderCode);
    return r.status === 200 ? r : (assert.equal(r.status, 429, r.text), false);
  }, { what: 'the address block to end', timeoutMs: 15000, intervalMs: 250 });
  assert.equal(ok.json.user_id, ids.bystander);
  const v = await until(async () => {
    const r = await enroll('victim.v', victimCode);
    return r.status === 200 ? r : (assert.equal(r.status, 429, r.text), false);
  }, { what: "the victim's delay to end", timeoutMs: 15000, intervalMs: 250 });
  assert.equal(v.json.user_id, ids.victim);
});
