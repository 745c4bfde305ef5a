// Credentials through the JSON API: a school admin or teacher issues a
// one-time code, the person sets a password with user name + code, and the
// sign-in check (Authenticate, an internal RPC) accepts that password.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { startSuite, api, bin, root, redisDb } from '../lib/kreide.mjs';

let s;
let op;
const ids = {};
const secrets = []; // every code and password this file used
const tokens = {};

const sql = (query) =>
  execFileSync('psql', [s.dbUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', query]).toString().trim();

before(async () => {
  s = await startSuite({ name: 'credentials', env: { KREIDE_REDIS_URL: redisDb(5) } });
  op = s.token({ roles: ['operator'] });
  const school = await post('/api/v1/schools', { name: 'Grundschule Am Deich', kind: 'SCHOOL', kennung: '123456' });
  assert.equal(school.status, 201, school.text);
  ids.school = school.json.id;
  const at = (role) => [{ school_id: ids.school, role }];
  ids.admin = (await user('anke.admin', 'Anke', 'Albers', at('SCHOOL_ADMIN'))).id;
  ids.teacher = (await user('tom.lehrer', 'Tom', 'Lehmann', at('TEACHER'))).id;
  ids.lena = (await user('lena.schmidt', 'Lena', 'Schmidt', at('PUPIL'))).id;
  ids.paul = (await user('paul.peters', 'Paul', 'Peters', at('PUPIL'))).id;
  ids.mia = (await user('mia.meyer', 'Mia', 'Meyer', at('PUPIL'))).id;
  tokens.admin = s.token({ sub: ids.admin, schools: [`${ids.school}:school_admin`] });
  tokens.teacher = s.token({ sub: ids.teacher, schools: [`${ids.school}:teacher`] });
  const cls = await post(`/api/v1/schools/${ids.school}/groups`, { kind: 'CLASS', name: '3a', school_year: '2026/27' });
  assert.equal(cls.status, 201, cls.text);
  for (const [uid, role] of [[ids.teacher, 'LEADER'], [ids.lena, 'MEMBER']]) {
    const m = await post(`/api/v1/groups/${cls.json.id}/members`, { user_id: uid, role });
    assert.equal(m.status, 201, m.text);
  }
});
after(async () => s && s.stop());

function post(path, body, token = op) {
  return api(`${s.url}${path}`, { method: 'POST', token, body });
}

async function user(username, given, family, contexts) {
  const r = await post('/api/v1/users', { username, given_name: given, family_name: family, contexts });
  assert.equal(r.status, 201, r.text);
  return r.json;
}

async function issue(userId, purpose, token = tokens.admin) {
  const r = await post(`/api/v1/users/${userId}/codes`, { school_id: ids.school, purpose }, token);
  if (r.json && r.json.code) secrets.push(r.json.code, r.json.code.replaceAll('-', ''));
  return r;
}

function enroll(username, code, password) {
  secrets.push(password);
  return api(`${s.url}/api/v1/enroll`, { method: 'POST', body: { username, code, password } });
}

function authenticate(username, password, address = '198.51.100.20') {
  return s.rpc('kreide.identity.Identity/Authenticate', JSON.stringify({ username, password, client_address: address }));
}

const passwordHash = (id) => sql(`SELECT coalesce(password_hash, 'none') FROM identity.users WHERE id = '${id}'`);

test('a school admin issues an enrollment code; the person sets a password with it', async () => {
  const before = Date.now();
  const r = await issue(ids.lena, 'ENROLLMENT');
  assert.equal(r.status, 201, r.text);
  assert.match(r.json.code, /^[3479ACDEFGHJKMNPRTUVWXY]{4}-[3479ACDEFGHJKMNPRTUVWXY]{4}-[3479ACDEFGHJKMNPRTUVWXY]{4}$/);
  assert.equal(r.json.purpose, 'ENROLLMENT');
  assert.equal(r.json.user_id, ids.lena);
  const ttl = Date.parse(r.json.expires_at) - before;
  assert.ok(Math.abs(ttl - 72 * 3600e3) < 60e3, `an enrollment code lives 72 hours, got ${r.json.expires_at}`);
  // The code is stored only as an HMAC.
  assert.equal(sql(`SELECT count(*) FROM identity.one_time_codes WHERE user_id = '${ids.lena}' AND position('${r.json.code}' in encode(code_hash, 'escape')) > 0`), '0');

  // Typed the way people type it off a paper slip.
  const typed = r.json.code.toLowerCase().replaceAll('-', ' ');
  const e = await enroll('Lena.Schmidt', typed, 'mein pferd heisst blitz');
  assert.equal(e.status, 200, e.text);
  assert.deepEqual(e.json, { user_id: ids.lena, username: 'lena.schmidt' });
  assert.match(passwordHash(ids.lena), /^\$argon2id\$v=19\$m=28672,t=2,p=1\$/);
  ids.lenaCode = r.json.code;

  const ok = authenticate('lena.schmidt', 'mein pferd heisst blitz');
  assert.equal(ok.status, 'OK', JSON.stringify(ok));
  assert.equal(ok.body.user_id, ids.lena);
  assert.equal(ok.body.username, 'lena.schmidt');
  assert.equal(ok.body.given_name, 'Lena');
  assert.equal(ok.body.display_name, 'Lena Schmidt');
  assert.ok(Math.abs(Number(ok.body.auth_time) - Date.now() / 1000) < 60);
  assert.deepEqual(ok.body.schools, [{ school_id: ids.school, kennung: '123456', roles: ['pupil'], schulconnex_roles: ['Lern'] }]);
});

test('a code works once', async () => {
  const again = await enroll('lena.schmidt', ids.lenaCode, 'ein ganz anderes passwort');
  assert.equal(again.status, 400, again.text);
  assert.equal(again.json.error.code, 'identity.code_used');
  assert.equal(again.json.error.field, 'code');
  assert.equal(authenticate('lena.schmidt', 'mein pferd heisst blitz').status, 'OK');
  assert.equal(authenticate('lena.schmidt', 'ein ganz anderes passwort').status, 'UNAUTHENTICATED');
});

test('a weak password is refused with the reason, and the code stays usable', async () => {
  const r = await issue(ids.paul, 'ENROLLMENT');
  assert.equal(r.status, 201, r.text);
  const refusals = [
    ['kurz', 'password.too_short'],
    ['passwort1', 'password.common'],
    ['Fussball2015', 'password.common'],
    ['paul.peters', 'password.personal'],
    ['PaulPeters2017', 'password.personal'],
    ['12345678', 'password.sequence'],
  ];
  for (const [pw, code] of refusals) {
    const e = await enroll('paul.peters', r.json.code, pw);
    assert.equal(e.status, 400, `${pw}: ${e.text}`);
    assert.equal(e.json.error.code, code, pw);
    assert.equal(e.json.error.field, 'password');
    assert.ok(e.json.error.message.length > 10);
  }
  assert.equal(passwordHash(ids.paul), 'none');
  assert.equal(sql(`SELECT count(*) FROM identity.one_time_codes WHERE user_id = '${ids.paul}' AND used_at IS NULL`), '1');
  const e = await enroll('paul.peters', r.json.code, 'drei kleine kraniche');
  assert.equal(e.status, 200, e.text);
});

test('an expired code is refused and changes nothing', async () => {
  const r = await issue(ids.mia, 'ENROLLMENT');
  assert.equal(r.status, 201, r.text);
  sql(`UPDATE identity.one_time_codes SET created_at = now() - interval '4 days', expires_at = now() - interval '1 minute' WHERE user_id = '${ids.mia}'`);
  const e = await enroll('mia.meyer', r.json.code, 'gelbe gummistiefel');
  assert.equal(e.status, 400, e.text);
  assert.equal(e.json.error.code, 'identity.code_expired');
  assert.equal(passwordHash(ids.mia), 'none');
  assert.equal(sql(`SELECT count(*) FROM identity.one_time_codes WHERE user_id = '${ids.mia}' AND used_at IS NULL`), '1');
});

test('a new code retires the older one of the same purpose', async () => {
  const first = await issue(ids.mia, 'ENROLLMENT');
  const second = await issue(ids.mia, 'ENROLLMENT');
  assert.equal(second.status, 201, second.text);
  const old = await enroll('mia.meyer', first.json.code, 'gelbe gummistiefel');
  assert.equal(old.status, 400, old.text);
  assert.equal(old.json.error.code, 'identity.code_used');
  assert.equal(sql(`SELECT count(*) FROM identity.one_time_codes WHERE user_id = '${ids.mia}' AND used_at IS NULL AND retired_at IS NULL`), '1');
  const e = await enroll('mia.meyer', second.json.code, 'gelbe gummistiefel');
  assert.equal(e.status, 200, e.text);
});

test('a teacher issues a reset code for a pupil of their class; the old password stops working', async () => {
  const r = await issue(ids.lena, 'RESET', tokens.teacher);
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.purpose, 'RESET');
  const ttl = Date.parse(r.json.expires_at) - Date.now();
  assert.ok(Math.abs(ttl - 24 * 3600e3) < 60e3, `a reset code lives 24 hours, got ${r.json.expires_at}`);
  const e = await enroll('lena.schmidt', r.json.code, 'rote schuhe im schnee');
  assert.equal(e.status, 200, e.text);
  assert.equal(authenticate('lena.schmidt', 'mein pferd heisst blitz').status, 'UNAUTHENTICATED');
  assert.equal(authenticate('lena.schmidt', 'rote schuhe im schnee').status, 'OK');
});

test('an enrollment code cannot replace a password that is set', async () => {
  const r = await issue(ids.lena, 'ENROLLMENT');
  assert.equal(r.status, 201, r.text);
  const hash = passwordHash(ids.lena);
  const e = await enroll('lena.schmidt', r.json.code, 'ein neues passwort fuer mich');
  assert.equal(e.status, 400, e.text);
  assert.equal(e.json.error.code, 'identity.code_wrong_purpose');
  assert.equal(passwordHash(ids.lena), hash);
});

test('Authenticate answers unknown users exactly like a wrong password', async () => {
  const unknown = authenticate('nobody.here', 'rote schuhe im schnee');
  const wrong = authenticate('lena.schmidt', 'rote schuhe im regen');
  const unenrolled = authenticate('anke.admin', 'irgendein passwort');
  for (const r of [unknown, wrong, unenrolled]) {
    assert.equal(r.status, 'UNAUTHENTICATED', JSON.stringify(r));
    assert.equal(r.error_code, 'identity.bad_credentials');
    assert.equal(r.message, wrong.message);
  }
});

test('no code and no password reaches a log', async () => {
  assert.ok(secrets.length > 20);
  for (const d of [s.identity, ...s.gateways]) {
    const log = readFileSync(d.logPath, 'utf8');
    assert.ok(log.includes('code issued') || d !== s.identity);
    for (const secret of secrets) {
      if (secret.length >= 8) assert.ok(!log.toLowerCase().includes(secret.toLowerCase()), `${d.name} logged a secret`);
    }
  }
});

test('a short pepper or a missing deny-list stops the daemon at start with a clear message', () => {
  const base = {
    PATH: process.env.PATH,
    KREIDE_DATABASE_URL: s.dbUrl,
    KREIDE_INTERNAL_KEYS: s.internalKeys,
    KREIDE_MIGRATIONS_DIR: path.join(root, 'services/identity/migrations'),
    KREIDE_IDENTITY_LISTEN: `ipc://${s.dir}/never.sock`,
  };
  const start = (env) => spawnSync(path.join(bin, 'kreide-identity'), [], { env: { ...base, ...env }, encoding: 'utf8', timeout: 20000 });
  const noPepper = start({});
  assert.equal(noPepper.status, 1, noPepper.stderr);
  assert.match(noPepper.stderr, /KREIDE_CODE_PEPPER/);
  const short = start({ KREIDE_CODE_PEPPER: 'too-short' });
  assert.equal(short.status, 1, short.stderr);
  assert.match(short.stderr, /KREIDE_CODE_PEPPER: must be at least 32 bytes/);
  assert.ok(!short.stderr.includes('too-short'), 'the secret is not echoed');
  const missing = start({ KREIDE_CODE_PEPPER: 'p'.repeat(40), KREIDE_PASSWORD_DENYLIST: `${s.dir}/no-such-list.txt` });
  assert.equal(missing.status, 1, missing.stderr);
  assert.match(missing.stderr, /KREIDE_PASSWORD_DENYLIST: .*no-such-list\.txt/);
});
