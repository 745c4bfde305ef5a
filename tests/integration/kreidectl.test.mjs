// kreidectl, the operators' command-line client, against a real gateway:
// every directory command with --json parsed and with its human line, the
// ways it authenticates, and its exit status for API refusals (3), usage
// errors (1) and a gateway that cannot be reached (4).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { startSuite, api, bin, freePort } from '../lib/kreide.mjs';

let s;
const ids = {};

before(async () => {
  s = await startSuite({ name: 'kreidectl' });
});
after(async () => s && s.stop());

// The environment without any KREIDE_ setting, so that only what a test
// passes counts.
function cleanEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KREIDE_')));
  return { ...env, ...extra };
}

// Runs kreidectl; `auth` false sends no credentials.
function ctl(args, { auth = true, url = s.url, env = {} } = {}) {
  const pre = [];
  if (url) pre.push('--url', url);
  if (auth) pre.push('--keys', s.keysDir);
  const r = spawnSync(path.join(bin, 'kreidectl'), [...pre, ...args], { encoding: 'utf8', env: cleanEnv(env) });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// Runs a --json command that must succeed and returns its parsed reply.
function json(args, opts) {
  const r = ctl(['--json', ...args], opts);
  assert.equal(r.code, 0, `kreidectl ${args.join(' ')}: ${r.err}`);
  return JSON.parse(r.out);
}

const uuid = /[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/;

test('carrier, school, users, groups, members and a guardianship through kreidectl --json', async () => {
  const carrier = json(['carrier', 'create', '--name', 'Gemeinde Lindenau']);
  assert.match(carrier.id, uuid);
  assert.equal(carrier.name, 'Gemeinde Lindenau');
  ids.carrier = carrier.id;

  const school = json(['school', 'create', '--name', 'Grundschule Lindenau', '--kind', 'school', '--kennung', 'GS-LIN-1',
    '--carrier', carrier.id]);
  assert.equal(school.kind, 'SCHOOL');
  assert.equal(school.kennung, 'GS-LIN-1');
  assert.equal(school.carrier_id, carrier.id);
  ids.school = school.id;
  // What kreidectl created is what the API serves.
  assert.deepEqual((await api(`${s.url}/api/v1/schools/${school.id}`)).json, school);

  const teacher = json(['user', 'create', '--username', 'lena.lehrer', '--given', 'Lena', '--family', 'Lehrer',
    '--school', school.id, '--role', 'teacher']);
  assert.equal(teacher.display_name, 'Lena Lehrer');
  assert.deepEqual(teacher.contexts.map((c) => [c.school_id, c.role, c.schulconnex_role]), [[school.id, 'TEACHER', 'Lehr']]);
  const pupil = json(['user', 'create', '--username', 'paul.pupil', '--given', 'Paul', '--family', 'Pupil',
    '--school', school.id, '--role', 'pupil']);
  const parent = json(['user', 'create', '--username', 'petra.pupil', '--given', 'Petra', '--family', 'Pupil',
    '--school', school.id, '--role', 'parent']);
  Object.assign(ids, { teacher: teacher.id, pupil: pupil.id, parent: parent.id });

  const group = json(['group', 'create', '--school', school.id, '--name', '3c', '--kind', 'class', '--year', '2026/27']);
  assert.deepEqual([group.school_id, group.kind, group.name, group.school_year], [school.id, 'CLASS', '3c', '2026/27']);
  ids.group = group.id;
  const staff = json(['group', 'create', '--school', school.id, '--name', 'Lehrerzimmer', '--kind', 'staff']);
  assert.equal(staff.kind, 'STAFF_ROOM');

  const lead = json(['group', 'add-member', '--group', group.id, '--user', teacher.id, '--leader']);
  assert.deepEqual([lead.group_id, lead.user_id, lead.role], [group.id, teacher.id, 'LEADER']);
  const member = json(['group', 'add-member', '--group', group.id, '--user', pupil.id]);
  assert.equal(member.role, 'MEMBER');

  const g = json(['guardian', 'add', '--parent', parent.id, '--child', pupil.id, '--school', school.id]);
  assert.deepEqual([g.parent_id, g.child_id, g.school_id], [parent.id, pupil.id, school.id]);

  // The lists read back what was made, in the API's own shape.
  const members = json(['group', 'members', '--group', group.id]);
  assert.deepEqual(members.members.map((m) => [m.username, m.role]).sort(),
    [['lena.lehrer', 'LEADER'], ['paul.pupil', 'MEMBER']]);
  assert.equal(members.page.next_cursor, '');
  const groups = json(['group', 'list', '--school', school.id]);
  assert.deepEqual(groups.groups.map((x) => x.name).sort(), ['3c', 'Lehrerzimmer']);
  const people = json(['directory', 'search', '--school', school.id, '--query', 'pupil']);
  assert.deepEqual(people.people.map((p) => p.username).sort(), ['paul.pupil', 'petra.pupil']);
});

test('lists follow every page', async () => {
  for (const n of ['1', '2', '3', '4', '5']) json(['school', 'create', '--name', `Pagingschule ${n}`, '--kind', 'community']);
  // Two per page: three requests, one list.
  const list = json(['--page-size', '2', 'school', 'list', '--prefix', 'Pagingschule']);
  assert.deepEqual(list.schools.map((x) => x.name).sort(), [1, 2, 3, 4, 5].map((n) => `Pagingschule ${n}`));
  assert.equal(new Set(list.schools.map((x) => x.id)).size, 5);
  const lines = ctl(['--page-size', '2', 'school', 'list', '--prefix', 'Pagingschule']);
  assert.equal(lines.out.trim().split('\n').length, 5);
  assert.equal(ctl(['--page-size', '0', 'school', 'list']).code, 1);
});

test('without --json each object is one readable line', async () => {
  const r = ctl(['school', 'create', '--name', 'Kita "Regenbogen"', '--kind', 'KITA', '--kennung', 'KITA-RB']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`^school ${uuid.source} "Kita \\\\"Regenbogen\\\\"" KITA kennung KITA-RB\\n$`));

  const list = ctl(['school', 'list', '--prefix', 'Grundschule Lin']);
  assert.equal(list.code, 0, list.err);
  assert.equal(list.out, `school ${ids.school} "Grundschule Lindenau" SCHOOL kennung GS-LIN-1 carrier ${ids.carrier}\n`);

  const members = ctl(['group', 'members', '--group', ids.group]);
  assert.match(members.out, /^member \S+ lena\.lehrer "Lena Lehrer" LEADER$/m);
  assert.match(members.out, /^member \S+ paul\.pupil "Paul Pupil" MEMBER$/m);

  const user = ctl(['user', 'create', '--username', 'max.muster', '--given', 'Max', '--family', 'Muster',
    '--school', ids.school, '--role', 'staff']);
  assert.equal(user.code, 0, user.err);
  assert.match(user.out, new RegExp(`^user ${uuid.source} max\\.muster "Max Muster" STAFF@${ids.school}\\n$`));
});

test('an API refusal exits 3 with the API\'s code and message; nothing is created', async () => {
  const dup = ctl(['school', 'create', '--name', 'Zweite', '--kind', 'school', '--kennung', 'GS-LIN-1']);
  assert.equal(dup.code, 3);
  assert.equal(dup.out, '');
  assert.match(dup.err, /a school with kennung 'GS-LIN-1' already exists \(identity\.kennung_taken, field kennung, HTTP 409\)/);

  // With --json the error body comes as the API sent it.
  const dupJson = ctl(['--json', 'school', 'create', '--name', 'Zweite', '--kind', 'school', '--kennung', 'GS-LIN-1']);
  assert.equal(dupJson.code, 3);
  assert.equal(JSON.parse(dupJson.out).error.code, 'identity.kennung_taken');

  const noAuth = ctl(['school', 'create', '--name', 'Zweite', '--kind', 'school'], { auth: false });
  assert.equal(noAuth.code, 3);
  assert.match(noAuth.err, /auth\.required, HTTP 401/);

  const badToken = ctl(['--token', 'not.a.token', 'school', 'list'], { auth: false });
  assert.equal(badToken.code, 3);
  assert.match(badToken.err, /auth\.invalid_token, HTTP 401/);

  const forbidden = ctl(['--token', s.token({ sub: ids.teacher, schools: [`${ids.school}:teacher`] }),
    'group', 'create', '--school', ids.school, '--name', 'Fremd', '--kind', 'club'], { auth: false });
  assert.equal(forbidden.code, 3);
  assert.match(forbidden.err, /identity\.forbidden, HTTP 403/);

  const missing = ctl(['group', 'add-member', '--group', '01890000-0000-7000-8000-000000000000', '--user', ids.pupil]);
  assert.equal(missing.code, 3);
  assert.match(missing.err, /identity\.not_found/);

  const names = json(['school', 'list', '--prefix', 'Zweite']).schools;
  assert.deepEqual(names, []);
  assert.deepEqual(json(['group', 'list', '--school', ids.school]).groups.map((g) => g.name).sort(), ['3c', 'Lehrerzimmer']);
});

test('usage errors exit 1 before anything is sent', async () => {
  const cases = [
    ['school', 'create', '--kind', 'school'],                       // no --name
    ['school', 'create', '--name', 'X', '--kind', 'gymnasium'],     // unknown kind
    ['user', 'create', '--username', 'a.b', '--given', 'A', '--family', 'B', '--school', ids.school], // --school without --role
    ['group', 'create', '--school', ids.school, '--name', 'X', '--kind', 'club', 'extra'],
    ['school', 'frobnicate'],
    ['--url', 'ftp://example.org', 'school', 'list'],
  ];
  for (const args of cases) {
    const r = ctl(args);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.out}${r.err}`);
    assert.ok(r.err.length > 0);
  }
  assert.equal(ctl(['--keys', path.join(s.dir, 'no-such-dir'), 'school', 'list'], { auth: false }).code, 1);
  assert.deepEqual(json(['school', 'list', '--prefix', 'X']).schools, []);
});

test('a gateway that cannot be reached exits 4', async () => {
  const port = await freePort(); // free: nothing listens there
  const r = ctl(['school', 'list'], { url: `http://127.0.0.1:${port}` });
  assert.equal(r.code, 4);
  assert.match(r.err, /cannot reach the gateway/);
});

test('the gateway and token come from --url/--token or KREIDE_URL/KREIDE_TOKEN', async () => {
  const op = s.token({ roles: ['operator'] });
  const viaFlag = ctl(['--token', op, '--json', 'school', 'get', '--id', ids.school], { auth: false });
  assert.equal(viaFlag.code, 0, viaFlag.err);
  assert.equal(JSON.parse(viaFlag.out).id, ids.school);
  const viaEnv = ctl(['--json', 'school', 'list', '--prefix', 'Grundschule Lin'],
    { auth: false, url: null, env: { KREIDE_URL: `${s.url}/`, KREIDE_TOKEN: op } });
  assert.equal(viaEnv.code, 0, viaEnv.err);
  assert.deepEqual(JSON.parse(viaEnv.out).schools.map((x) => x.id), [ids.school]);
  // The key directory in the environment works like --keys.
  const viaKeys = ctl(['school', 'get', '--id', ids.school], { auth: false, env: { KREIDE_JWT_KEYS_DIR: s.keysDir } });
  assert.equal(viaKeys.code, 0, viaKeys.err);
  // Global options may also follow the command.
  const after = ctl(['school', 'get', '--id', ids.school, '--json'], { auth: false, url: null,
    env: { KREIDE_URL: s.url } });
  assert.equal(after.code, 0, after.err);
  assert.equal(JSON.parse(after.out).id, ids.school);
});

test('code issue: an enrollment code, or a clear report of a gateway without the route', async () => {
  const r = ctl(['code', 'issue', '--user', ids.pupil, '--school', ids.school, '--purpose', 'enrollment']);
  if (r.code === 3 && /api\.not_found/.test(r.err)) {
    assert.match(r.err, new RegExp(`no route POST /api/v1/users/${ids.pupil}/codes`));
    return;
  }
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^code [A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4} ENROLLMENT/);
});

test('client create: client id and secret, or a clear report of a gateway without the route', async () => {
  const args = ['client', 'create', '--name', 'Schul-Wiki', '--type', 'confidential',
    '--redirect-uri', 'https://wiki.example.org/callback', '--grant', 'authorization_code', '--grant', 'refresh_token',
    '--scope', 'openid profile school'];
  const r = ctl(args);
  if (r.code === 3 && /api\.not_found/.test(r.err)) {
    assert.match(r.err, /no route POST \/api\/v1\/oidc\/clients/);
    return;
  }
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^client \S+ "Schul-Wiki" CONFIDENTIAL\nsecret \S+/);
  const j = json(['--json', ...args.slice(0, 3), 'Schul-Wiki 2', ...args.slice(4)]);
  assert.ok(j.client_id && j.client_secret);
});
