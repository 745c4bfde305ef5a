// Starts real Kreide daemons for one test file: its own database, its own
// keys, sockets and ports, against the PostgreSQL and Redis that the test
// runner (scripts/test) started. Nothing here mocks a server.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, createWriteStream, chmodSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import os from 'node:os';

export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
export const bin = path.resolve(root, process.env.BUILD || 'build', 'bin');
const outDir = process.env.KREIDE_TEST_OUT || path.join(os.tmpdir(), 'kreide-test-out');

export function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the suites through 'make test'`);
  return v;
}

// A free TCP port on loopback, chosen by the kernel.
// A Redis database of the runner's Redis for one test file alone (its
// throttle counters, sessions and flags must not meet another file's),
// emptied first so that an earlier run leaves nothing behind.
export function redisDb(n) {
  const u = new URL(required('KREIDE_TEST_REDIS_URL'));
  u.pathname = `/${n}`;
  execFileSync('redis-cli', ['-u', u.toString(), 'FLUSHDB'], { stdio: ['ignore', 'pipe', 'pipe'] });
  return u.toString();
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Polls `fn` until it returns a truthy value or the deadline passes.
export async function until(fn, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

function psql(url, sql) {
  execFileSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], { stdio: ['ignore', 'pipe', 'pipe'] });
}

class Daemon {
  constructor(name, file, args, env, logPath) {
    Object.assign(this, { name, file, args, env, logPath });
    this.proc = null;
  }
  start() {
    const log = createWriteStream(this.logPath, { flags: 'a' });
    this.proc = spawn(this.file, this.args, { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout.pipe(log);
    this.proc.stderr.pipe(log);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
    return this;
  }
  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill(signal);
    return this.exited;
  }
}

// Starts identity, messaging and `gateways` gateways. Returns handles and helpers.
export async function startSuite({ gateways = 1, name = 'suite', env: extraEnv = {} } = {}) {
  const adminUrl = required('KREIDE_TEST_PG_URL');
  const db = `kt_${name.replace(/[^a-z0-9]/gi, '').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  psql(adminUrl, `CREATE DATABASE ${db}`);
  const dbUrl = adminUrl.replace(/\/[^/?]*(\?|$)/, `/${db}$1`);

  mkdirSync(outDir, { recursive: true });
  const dir = mkdtempSync(path.join(os.tmpdir(), `kreide-${name}-`));
  chmodSync(dir, 0o755);
  const keysDir = path.join(dir, 'jwt');
  execFileSync(path.join(bin, 'kreidectl'), ['keygen', keysDir, 'test1']);
  // An RSA key for clients registered for RS256 ID tokens; its kid sorts
  // after test1, and the EC key still signs everything else.
  execFileSync(path.join(bin, 'kreidectl'), ['keygen', '--alg', 'RS256', keysDir, 'test1-rsa']);
  const internalKeys = `t1:${randomBytes(32).toString('base64')}`;
  const identityUrl = `ipc://${dir}/identity.sock`;

  const passThrough = ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'TMPDIR'];
  const base = {
    PATH: process.env.PATH,
    ...Object.fromEntries(passThrough.filter((k) => process.env[k]).map((k) => [k, process.env[k]])),
    KREIDE_LOG_LEVEL: 'info',
    KREIDE_INTERNAL_KEYS: internalKeys,
    ...extraEnv,
  };
  const identityEnv = {
    ...base,
    KREIDE_DATABASE_URL: dbUrl,
    KREIDE_IDENTITY_LISTEN: identityUrl,
    KREIDE_MIGRATIONS_DIR: path.join(root, 'services/identity/migrations'),
    KREIDE_WORKERS: '4',
    // Credentials: a fresh pepper per suite and the deny-list from the tree,
    // unless the test gives its own.
    KREIDE_CODE_PEPPER: randomBytes(32).toString('base64'),
    KREIDE_PASSWORD_DENYLIST: path.join(root, 'services/identity/data/common-passwords.txt'),
    ...extraEnv,
    // Roster events go to the runner's Redis when it gives one.
    ...(process.env.KREIDE_TEST_REDIS_URL && !('KREIDE_REDIS_URL' in extraEnv) ? { KREIDE_REDIS_URL: process.env.KREIDE_TEST_REDIS_URL } : {}),
  };
  const identity = new Daemon('identity', path.join(bin, 'kreide-identity'), [], identityEnv,
    path.join(outDir, `${name}-identity.log`)).start();

  // Messaging: its own schema in the same database; it asks identity for
  // people and groups and follows identity's roster events on the same Redis.
  const messagingUrl = `ipc://${dir}/messaging.sock`;
  const messagingEnv = {
    ...base,
    KREIDE_DATABASE_URL: dbUrl,
    KREIDE_MESSAGING_LISTEN: messagingUrl,
    KREIDE_IDENTITY_URL: identityUrl,
    KREIDE_MIGRATIONS_DIR: path.join(root, 'services/messaging/migrations'),
    KREIDE_WORKERS: '4',
    ...extraEnv,
    ...(identityEnv.KREIDE_REDIS_URL ? { KREIDE_REDIS_URL: identityEnv.KREIDE_REDIS_URL } : {}),
  };
  const messaging = new Daemon('messaging', path.join(bin, 'kreide-messaging'), [], messagingEnv,
    path.join(outDir, `${name}-messaging.log`)).start();

  const gws = [];
  const ports = [];
  for (let i = 0; i < gateways; i++) ports.push(await freePort());
  for (let i = 0; i < gateways; i++) {
    const port = ports[i];
    const gwEnv = {
      ...base,
      KREIDE_HTTP_ADDR: `127.0.0.1:${port}`,
      KREIDE_HTTP_THREADS: '2',
      KREIDE_IDENTITY_URL: identityUrl,
      KREIDE_MESSAGING_URL: messagingUrl,
      KREIDE_JWT_KEYS_DIR: keysDir,
      // Replicas of one provider: every gateway issues and accepts tokens
      // under the first one's address.
      KREIDE_ISSUER: `http://127.0.0.1:${ports[0]}`,
      // Token revocations travel over the runner's Redis when it gives one.
      ...(process.env.KREIDE_TEST_REDIS_URL && !('KREIDE_REDIS_URL' in extraEnv) ? { KREIDE_REDIS_URL: process.env.KREIDE_TEST_REDIS_URL } : {}),
      KREIDE_RPC_TIMEOUT_MS: extraEnv.KREIDE_RPC_TIMEOUT_MS || '3000',
      KREIDE_MAX_BODY_BYTES: extraEnv.KREIDE_MAX_BODY_BYTES || '65536',
    };
    const d = new Daemon(`gateway${i}`, path.join(bin, 'kreide-gateway'), [], gwEnv,
      path.join(outDir, `${name}-gateway${i}.log`)).start();
    d.url = `http://127.0.0.1:${port}`;
    gws.push(d);
  }
  const url = gws[0].url;
  // Every replica, so that a test may talk to any of them at once.
  for (const g of gws) {
    await until(async () => (await fetch(`${g.url}/readyz`)).status === 200, { what: `${g.name} ready`, timeoutMs: 20000 });
  }

  const suite = {
    url, identity, gateways: gws, dir, dbUrl, internalKeys, identityUrl, keysDir, messaging, messagingUrl,
    redisUrl: identityEnv.KREIDE_REDIS_URL,
    // A bearer token signed with this suite's key, as `kreidectl token` makes it.
    token({ roles = [], sub, schools = [], ttl } = {}) {
      const args = ['token', '--keys', keysDir];
      for (const r of roles) args.push('--role', r);
      if (sub) args.push('--sub', sub);
      for (const s of schools) args.push('--school', s);
      if (ttl) args.push('--ttl', String(ttl));
      return execFileSync(path.join(bin, 'kreidectl'), args, { env: { ...process.env, KREIDE_ISSUER: url } })
        .toString().trim();
    },
    // Sends one RPC straight to the identity socket, or to `url` (see
    // `kreidectl rpc`): as a person (`user`, `roles`) or, with `service`, as
    // a SERVICE caller with that client id (`service: 'gateway'` calls as the
    // gateway does).
    rpc(method, json, { roles = [], user, service, seal = true, keys = internalKeys, url: to = identityUrl } = {}) {
      const args = ['rpc', to, method, json];
      for (const r of roles) args.push('--role', r);
      if (user) args.push('--user', user);
      if (service) args.push('--service', service);
      if (!seal) args.push('--no-seal');
      try {
        const out = execFileSync(path.join(bin, 'kreidectl'), args,
          { env: { ...process.env, KREIDE_INTERNAL_KEYS: keys }, stdio: ['ignore', 'pipe', 'pipe'] });
        return JSON.parse(out.toString());
      } catch (e) {
        if (e.stdout && e.stdout.length) return JSON.parse(e.stdout.toString());
        throw e;
      }
    },
    async stop() {
      await Promise.all(gws.map((g) => g.stop()));
      await messaging.stop();
      await identity.stop();
      try { psql(adminUrl, `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`); } catch { /* best effort */ }
    },
  };
  return suite;
}

// fetch + JSON body, never throwing on HTTP errors.
export async function api(url, { method = 'GET', token, body, headers = {}, raw } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  let payload;
  if (raw !== undefined) payload = raw;
  else if (body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined && !h['content-type']) h['content-type'] = 'application/json';
  const res = await fetch(url, { method, headers: h, body: payload });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, json, text };
}

// Subscribes to a Redis pub/sub channel with a minimal RESP client (no npm
// package needed). `messages` collects the payloads; `ready` resolves once
// Redis confirmed the subscription.
export function subscribe(redisUrl, channel) {
  const u = new URL(redisUrl);
  const sock = net.connect(Number(u.port || 6379), u.hostname);
  const messages = [];
  let buf = Buffer.alloc(0);
  let confirm;
  const ready = new Promise((resolve, reject) => {
    confirm = resolve;
    sock.once('error', reject);
  });
  // Parses one RESP value at `i`; returns [value, next] or null when incomplete.
  const parse = (i) => {
    const nl = buf.indexOf('\r\n', i);
    if (nl < 0) return null;
    const line = buf.toString('utf8', i + 1, nl);
    switch (String.fromCharCode(buf[i])) {
      case '+': case '-': return [line, nl + 2];
      case ':': return [Number(line), nl + 2];
      case '$': {
        const n = Number(line);
        if (n < 0) return [null, nl + 2];
        if (buf.length < nl + 2 + n + 2) return null;
        return [buf.toString('utf8', nl + 2, nl + 2 + n), nl + 2 + n + 2];
      }
      case '*': {
        const out = [];
        let j = nl + 2;
        for (let k = 0; k < Number(line); k++) {
          const r = parse(j);
          if (!r) return null;
          out.push(r[0]);
          j = r[1];
        }
        return [out, j];
      }
      default: throw new Error(`unexpected RESP byte ${buf[i]}`);
    }
  };
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const r = parse(0);
      if (!r) break;
      buf = buf.subarray(r[1]);
      const v = r[0];
      if (Array.isArray(v) && v[0] === 'subscribe') confirm();
      else if (Array.isArray(v) && v[0] === 'message') messages.push(v[2]);
    }
  });
  const cmd = (...args) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  if (u.password) {
    const user = decodeURIComponent(u.username);
    const pass = decodeURIComponent(u.password);
    sock.write(user ? cmd('AUTH', user, pass) : cmd('AUTH', pass));
  }
  sock.write(cmd('SUBSCRIBE', channel));
  return { messages, ready, close: () => sock.destroy() };
}
