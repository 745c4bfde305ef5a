// The JSON API end to end: gateway -> nng -> identity -> PostgreSQL and back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSuite, api } from '../lib/kreide.mjs';

let s;
let operator;
before(async () => {
  s = await startSuite({ name: 'api' });
  operator = s.token({ roles: ['operator'] });
});
after(async () => s && s.stop());

test('healthz and readyz answer', async () => {
  const h = await api(`${s.url}/healthz`);
  assert.equal(h.status, 200);
  assert.deepEqual(h.json, { status: 'ok' });
  const r = await api(`${s.url}/readyz`);
  assert.equal(r.status, 200);
  assert.equal(r.json.ready, true);
  assert.equal(r.json.services.identity.ready, true);
});

test('an operator creates a school and anyone reads it back', async () => {
  const c = await api(`${s.url}/api/v1/schools`, {
    method: 'POST', token: operator, body: { name: 'Grundschule am Park', kennung: 'GS-0815', kind: 'SCHOOL' },
  });
  assert.equal(c.status, 201, c.text);
  assert.match(c.json.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(c.json.name, 'Grundschule am Park');
  assert.equal(c.json.kind, 'SCHOOL');
  assert.ok(c.headers.get('x-request-id'));

  const g = await api(`${s.url}/api/v1/schools/${c.json.id}`);
  assert.equal(g.status, 200);
  assert.deepEqual(g.json, c.json);

  const dup = await api(`${s.url}/api/v1/schools`, {
    method: 'POST', token: operator, body: { name: 'Copy', kennung: 'GS-0815', kind: 'SCHOOL' },
  });
  assert.equal(dup.status, 409);
  assert.equal(dup.json.error.code, 'identity.kennung_taken');
  assert.equal(dup.json.error.field, 'kennung');
});

test('listing pages through every school exactly once', async () => {
  const names = [];
  for (let i = 0; i < 7; i++) {
    const r = await api(`${s.url}/api/v1/schools`, {
      method: 'POST', token: operator, body: { name: `Kita Regenbogen ${i}`, kind: 'KITA' },
    });
    assert.equal(r.status, 201);
    names.push(r.json.name);
  }
  const seen = [];
  let cursor = '';
  for (let pages = 0; pages < 10; pages++) {
    const q = new URLSearchParams({ 'page.limit': '3', name_prefix: 'kita regen' });
    if (cursor) q.set('page.cursor', cursor);
    const r = await api(`${s.url}/api/v1/schools?${q}`, { token: operator });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.schools.length <= 3);
    seen.push(...r.json.schools.map((x) => x.name));
    cursor = r.json.page.next_cursor;
    if (!cursor) break;
  }
  assert.deepEqual(seen.sort(), names.sort());
});

test('a missing school is a JSON 404', async () => {
  const r = await api(`${s.url}/api/v1/schools/01890000-0000-7000-8000-000000000000`);
  assert.equal(r.status, 404);
  assert.equal(r.json.error.code, 'identity.not_found');
  assert.equal(r.json.error.request_id, r.headers.get('x-request-id'));
});

test('a client request id is carried through', async () => {
  const r = await api(`${s.url}/api/v1/schools/not-a-uuid`, { headers: { 'x-request-id': 'trace-abc.123' } });
  assert.equal(r.status, 400);
  assert.equal(r.headers.get('x-request-id'), 'trace-abc.123');
  assert.equal(r.json.error.request_id, 'trace-abc.123');
  assert.equal(r.json.error.field, 'id');
});

test('the OpenAPI document lists every route with its schemas', async () => {
  const r = await api(`${s.url}/api/v1/openapi.json`);
  assert.equal(r.status, 200);
  assert.equal(r.json.openapi, '3.0.3');
  assert.ok(r.json.paths['/api/v1/schools'].post.requestBody);
  assert.ok(r.json.paths['/api/v1/schools/{id}'].get);
  const school = r.json.components.schemas['kreide.identity.School'];
  assert.equal(school.type, 'object');
  assert.deepEqual(school.properties.kind.enum.sort(), ['COMMUNITY', 'KITA', 'SCHOOL', 'SCHOOL_KIND_UNSPECIFIED']);
  // Every $ref resolves.
  const text = JSON.stringify(r.json);
  for (const m of text.matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g))
    assert.ok(r.json.components.schemas[m[1]], `unresolved $ref ${m[1]}`);
});

test('metrics are exposed in Prometheus text format', async () => {
  const r = await api(`${s.url}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain/);
  assert.match(r.text, /# TYPE kreide_http_api_requests_total counter/);
  assert.match(r.text, /kreide_gateway_rpc_peers\{service="identity"\} [1-9]/);
});

test('security headers are on every response', async () => {
  for (const p of ['/healthz', '/api/v1/schools/x', '/nothing-here']) {
    const r = await api(`${s.url}${p}`);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', p);
    assert.equal(r.headers.get('x-frame-options'), 'DENY', p);
  }
});

test('error answers keep the connection open', async () => {
  const { request } = await import('node:http');
  const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set();
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve, reject) => {
      const req = request(`${s.url}/api/v1/schools/not-a-uuid`, { agent }, (res) => {
        sockets.add(req.socket);
        assert.equal(res.statusCode, 400);
        assert.notEqual(res.headers.connection, 'close');
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
  }
  agent.destroy();
  assert.equal(sockets.size, 1, 'each error answer closed the connection');
});


test('`kreide-identity migrate` needs only the database and is idempotent', async () => {
  const { spawnSync } = await import('node:child_process');
  const path = await import('node:path');
  const { bin, root } = await import('../lib/kreide.mjs');
  const env = {
    PATH: process.env.PATH,
    KREIDE_DATABASE_URL: s.dbUrl,
    KREIDE_MIGRATIONS_DIR: path.join(root, 'services/identity/migrations'),
  };
  const r = spawnSync(path.join(bin, 'kreide-identity'), ['migrate'], { env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const line = JSON.parse(r.stderr.trim().split('\n').pop());
  assert.equal(line.msg, 'schema up to date');
  assert.equal(line.applied, '0', 'the daemon already applied everything');
  assert.ok(Number(line.version) >= 1);
});

test('SIGTERM drains and stops both daemons cleanly', async () => {
  const t0 = Date.now();
  const gw = await s.gateways[0].stop('SIGTERM');
  const id = await s.identity.stop('SIGTERM');
  assert.equal(gw.code, 0);
  assert.equal(id.code, 0);
  assert.ok(Date.now() - t0 < 8000, 'shutdown took too long');
});
