// The tools `make bench` relies on, checked quickly without running a
// benchmark: the scripts parse, the load generator chains rotating refresh
// tokens (each used exactly once) and notices when the server refuses one,
// the argon2id floor tool counts hashes, the oidc-provider peer is set up as
// the bench says (client_credentials, a code flow through its development
// pages, ES256 ID tokens, rotation on refresh), and the WebSocket load tool
// runs a tiny class room (at full speed, at a fixed rate, and with a socket
// that is not in the room, which it must report) and holds idle sockets
// against real daemons.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { root, bin, freePort, until, startSuite, api } from '../lib/kreide.mjs';

const run = promisify(execFile);
const benchBin = (name) => path.resolve(root, process.env.BUILD || 'build', 'bench', name);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'kreide-benchtools-'));
const children = [];
let suite;
after(async () => {
  for (const c of children) c.kill('SIGTERM');
  if (suite) await suite.stop();
  rmSync(tmp, { recursive: true, force: true });
});

test('the bench scripts parse', () => {
  execFileSync('bash', ['-n', path.join(root, 'scripts/bench')]);
  const dir = path.join(root, 'tests/bench');
  const scripts = readdirSync(dir).filter((f) => f.endsWith('.mjs'));
  assert.ok(scripts.length >= 4, `found ${scripts}`);
  for (const f of scripts) execFileSync(process.execPath, ['--check', path.join(dir, f)]);
});

// A token endpoint in miniature: every refresh token works once and its
// answer carries the next one.
async function rotatingServer() {
  const live = new Set();
  const seen = { ok: 0, reused: 0 };
  let n = 0;
  const issue = () => {
    const t = `tok-${n++}-${Math.random().toString(36).slice(2)}`;
    live.add(t);
    return t;
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const rt = new URLSearchParams(body).get('refresh_token');
      if (req.headers.authorization !== 'Basic YmVuY2g6c2VjcmV0' || !live.delete(rt)) {
        seen.reused++;
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end('{"error":"invalid_grant"}');
        return;
      }
      seen.ok++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ access_token: 'a', token_type: 'Bearer', refresh_token: issue() }));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, seen, issue, port: server.address().port };
}

test('post_load chains each connection\'s refresh tokens and uses every token once', async () => {
  const s = await rotatingServer();
  try {
    const file = path.join(tmp, 'tokens.txt');
    writeFileSync(file, `${[1, 2, 3, 4].map(() => s.issue()).join('\n')}\n`);
    const args = ['-c', '4', '-d', '0.5', '-w', '0.2', '-H', 'Authorization: Basic YmVuY2g6c2VjcmV0', '-T', file,
      '-p', `self=${process.pid}`, '127.0.0.1', String(s.port), '/token', 'grant_type=refresh_token&refresh_token={rt}'];
    const { stdout } = await run(benchBin('post_load'), args);
    const r = JSON.parse(stdout);
    assert.equal(r.errors, 0, stdout);
    assert.ok(r.requests > 10, stdout);
    assert.equal(s.seen.reused, 0);
    // Warm-up and in-flight answers are not counted, so the server saw more.
    assert.ok(s.seen.ok >= r.requests, `${s.seen.ok} >= ${r.requests}`);
    assert.ok(r.cpu.self > 0 && r.server_cpu_s === r.cpu.self, stdout);
    assert.ok(r.p50_ms > 0 && r.p99_ms >= r.p50_ms, stdout);

    // The same first tokens again: all of them are used up, so every chain
    // fails at once and the run says so.
    const again = await run(benchBin('post_load'), args).then(() => null, (e) => e);
    assert.ok(again, 'a run whose tokens are refused must fail');
    const bad = JSON.parse(again.stdout);
    assert.ok(bad.errors >= 4, again.stdout);
    assert.match(bad.first_error, /invalid_grant/);
  } finally {
    s.server.close();
  }
});

test('post_load fills {user} from the list in turn and checks the expected status and text', async () => {
  const users = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      users.push(new URLSearchParams(body).get('username'));
      res.writeHead(303, { location: '/next', 'set-cookie': 'kreide_sso=x; Path=/', 'content-length': '0' });
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const file = path.join(tmp, 'users.txt');
    writeFileSync(file, 'anna\nben\ncarla\n');
    const base = ['-c', '1', '-d', '0.2', '-w', '0', '-e', '302,303', '-U', file, '127.0.0.1',
      String(server.address().port), '/oidc/login'];
    const ok = JSON.parse((await run(benchBin('post_load'), ['-k', 'kreide_sso=', ...base, 'username={user}&password=p'])).stdout);
    assert.equal(ok.errors, 0);
    assert.deepEqual(users.slice(0, 4), ['anna', 'ben', 'carla', 'anna']);
    const missing = await run(benchBin('post_load'), ['-k', 'no_such_cookie=', ...base, 'username={user}']).then(() => null, (e) => e);
    assert.ok(missing && JSON.parse(missing.stdout).errors > 0, 'an answer without the expected text is an error');
  } finally {
    server.close();
  }
});

test('argon2_cost -j counts hashes per second with several threads', async () => {
  const { stdout } = await run(benchBin('argon2_cost'), ['-j', '2', '-d', '0.3', '8192', '1', '1']);
  const m = /m=8192 t=1 p=1 threads=2: (\d+) hashes .* hashes\/s ([0-9.]+)/.exec(stdout);
  assert.ok(m, stdout);
  assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0, stdout);
});

test('the oidc-provider peer: client_credentials, a code flow, ES256 ID tokens, rotating refresh tokens', async () => {
  const port = await freePort();
  const [id, secret, redirect] = ['benchclient', 'a-secret-of-the-bench-client-0123456789abc', 'http://127.0.0.1/cb'];
  const child = spawn(process.execPath, [path.join(root, 'tests/bench/oidc_provider_server.mjs'), String(port), id, secret, redirect],
    { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  await until(() => out.includes('ready'), { what: 'oidc-provider listening' });
  const base = `http://127.0.0.1:${port}`;
  const token = async (fields) => {
    const res = await fetch(`${base}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields),
    });
    return { status: res.status, json: await res.json() };
  };

  const cc = await token({ grant_type: 'client_credentials', scope: 'reports' });
  assert.equal(cc.status, 200, JSON.stringify(cc.json));
  assert.equal(cc.json.scope, 'reports');
  assert.doesNotMatch(cc.json.access_token, /\./, 'opaque, its default format');

  const { stdout } = await run(process.execPath, [path.join(root, 'tests/bench/mint_tokens.mjs'), 'oidc-provider', base, id, secret,
    redirect, '2']);
  const minted = stdout.trim().split('\n');
  assert.equal(minted.length, 2);
  assert.notEqual(minted[0], minted[1]);

  const r1 = await token({ grant_type: 'refresh_token', refresh_token: minted[0] });
  assert.equal(r1.status, 200, JSON.stringify(r1.json));
  assert.notEqual(r1.json.refresh_token, minted[0], 'rotated');
  const header = JSON.parse(Buffer.from(r1.json.id_token.split('.')[0], 'base64url'));
  assert.equal(header.alg, 'ES256');
  const reused = await token({ grant_type: 'refresh_token', refresh_token: minted[0] });
  assert.equal(reused.status, 400);
  assert.equal(reused.json.error, 'invalid_grant');
  const r2 = await token({ grant_type: 'refresh_token', refresh_token: minted[1] });
  assert.equal(r2.status, 200, 'the other chain is untouched');
});

// A class of three with a roster room, made by the bench's own seed script
// (tests/bench/class_room.mjs) against real daemons; then ws_load with tiny
// numbers.
test('ws_load: a class room at full speed and at a fixed rate, every socket checked, and idle sockets', async () => {
  suite = await startSuite({ name: 'benchtools' });
  const op = suite.token({ roles: ['operator'] });
  const school = (await api(`${suite.url}/api/v1/schools`, { method: 'POST', token: op, body: { name: 'Bench Tools Grundschule', kind: 'SCHOOL' } })).json;
  const tokens = path.join(tmp, 'ws_tokens.txt');
  const { stdout: roomOut } = await run(process.execPath, [path.join(root, 'tests/bench/class_room.mjs'), suite.url, op, school.id, '3',
    path.join(bin, 'kreidectl'), tokens],
  { env: { ...process.env, KREIDE_JWT_KEYS_DIR: suite.keysDir, KREIDE_ISSUER: suite.url } });
  const room = roomOut.trim();
  assert.match(room, /^[0-9a-f-]{36}$/);
  assert.equal(readFileSync(tokens, 'utf8').trim().split('\n').length, 3);
  const port = new URL(suite.url).port;

  const full = JSON.parse((await run(benchBin('ws_load'), ['room', '-s', '2', '-d', '0.5', '-w', '0.2', '-D', '5', '127.0.0.1', port, room, tokens])).stdout);
  assert.equal(full.sockets, 3);
  assert.equal(full.ready, 3);
  assert.ok(full.sent > 5, JSON.stringify(full));
  assert.equal(full.send_errors, 0);
  // Every measured message reached every socket once, in order.
  assert.equal(full.delivered, full.sent * 3, JSON.stringify(full));
  assert.deepEqual([full.missing, full.duplicate, full.out_of_order, full.closed], [0, 0, 0, 0]);
  assert.ok(full.p50_ms > 0 && full.p99_ms >= full.p50_ms && full.max_ms >= full.p99_ms, JSON.stringify(full));
  assert.ok(full.http_p50_ms > 0, JSON.stringify(full));

  const fixed = JSON.parse((await run(benchBin('ws_load'), ['room', '-s', '2', '-r', '40', '-d', '0.5', '-w', '0', '127.0.0.1', port, room, tokens])).stdout);
  assert.equal(fixed.rate, 40);
  // 40/s for half a second: the schedule's 20 messages, each sent when due
  // or, if every sender was busy, late.
  assert.equal(fixed.sent, 20, JSON.stringify(fixed));
  assert.equal(fixed.delivered, fixed.sent * 3);
  assert.equal(fixed.missing, 0);

  // A pupil of the school outside the class gets no events: the tool must
  // say so and fail.
  const other = await api(`${suite.url}/api/v1/users`, { method: 'POST', token: op, body: {
    username: 'bench.outsider', given_name: 'Out', family_name: 'Sider', contexts: [{ school_id: school.id, role: 'PUPIL' }] } });
  assert.equal(other.status, 201, other.text);
  const stranger = suite.token({ sub: other.json.id, schools: [`${school.id}:pupil`] });
  const mixed = path.join(tmp, 'ws_tokens_mixed.txt');
  writeFileSync(mixed, `${readFileSync(tokens, 'utf8')}${stranger}\n`);
  const bad = await run(benchBin('ws_load'), ['room', '-s', '1', '-d', '0.3', '-w', '0', '-D', '1', '127.0.0.1', port, room, mixed])
    .then(() => null, (e) => e);
  assert.ok(bad, 'a socket that misses messages must fail the run');
  const b = JSON.parse(bad.stdout);
  assert.ok(b.sent > 0 && b.missing >= b.sent, bad.stdout);

  // Idle: every socket connected and ready, held until SIGTERM.
  const idle = spawn(benchBin('ws_load'), ['idle', '-n', '20', '-c', '5', '-t', '0.1', '127.0.0.1', port, tokens],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(idle);
  let out = '';
  idle.stdout.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => idle.once('exit', (code) => resolve(code)));
  await until(() => out.includes('\n'), { what: 'ws_load idle ready' });
  const first = JSON.parse(out.split('\n')[0]);
  assert.deepEqual([first.sockets, first.connected, first.failed, first.closed], [20, 20, 0, 0], out);
  idle.kill('SIGTERM');
  assert.equal(await exited, 0, out);
  const last = JSON.parse(out.trim().split('\n')[1]);
  assert.equal(last.open_at_end, 20, out);
});
