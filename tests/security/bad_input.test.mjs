// Bad input on every route of the OpenAPI document: a clear 4xx JSON error
// that names the problem, the gateway keeps serving, and nothing changes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startSuite, api } from '../lib/kreide.mjs';

let s;
let op;
let routes;
const MAX_BODY = 65536; // what startSuite configures

before(async () => {
  s = await startSuite({ name: 'badinput' });
  op = s.token({ roles: ['operator'] });
  const doc = (await api(`${s.url}/api/v1/openapi.json`)).json;
  routes = [];
  for (const [path, item] of Object.entries(doc.paths))
    for (const [method, opn] of Object.entries(item))
      routes.push({ path, method: method.toUpperCase(), op: opn, doc });
});
after(async () => s && s.stop());

const concrete = (p) => p.replace(/\{[^}]+\}/g, '01890000-0000-7000-8000-000000000000');

function isError(r, status) {
  assert.equal(r.status, status, `${r.status} ${r.text}`);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  assert.equal(typeof r.json.error.code, 'string');
  assert.ok(r.json.error.message.length > 0);
  assert.equal(r.json.error.request_id, r.headers.get('x-request-id'));
}

async function count() {
  const l = await api(`${s.url}/api/v1/schools?page.limit=500`, { token: op });
  return l.json.schools.length;
}

test('every route with a body: malformed JSON, wrong types, unknown fields, oversize', async () => {
  const before = await count();
  const withBody = routes.filter((r) => r.op.requestBody);
  assert.ok(withBody.length > 0);
  for (const r of withBody) {
    const url = `${s.url}${concrete(r.path)}`;
    let res = await api(url, { method: r.method, token: op, raw: '{"name": "x",' });
    isError(res, 400);
    assert.equal(res.json.error.code, 'request.malformed_json');
    assert.match(res.json.error.message, /line 1 column/);

    res = await api(url, { method: r.method, token: op, raw: '[1,2]' });
    isError(res, 400);

    res = await api(url, { method: r.method, token: op, body: { definitely_not_a_field: 1 } });
    isError(res, 400);
    assert.equal(res.json.error.field, 'definitely_not_a_field');
    assert.match(res.json.error.message, /unknown field 'definitely_not_a_field'/);

    // A wrong type for every property the schema declares.
    const ref = r.op.requestBody.content['application/json'].schema.$ref.split('/').pop();
    const props = r.doc.components.schemas[ref].properties;
    for (const [name, schema] of Object.entries(props)) {
      // A path parameter is taken from the path, whatever the body says.
      if (r.path.includes(`{${name}}`)) continue;
      const wrong = schema.type === 'string' ? { [name]: { nested: true } } : { [name]: 'not-a-number-or-object' };
      res = await api(url, { method: r.method, token: op, body: wrong });
      isError(res, 400);
      assert.equal(res.json.error.field.split('.')[0], name, `${r.method} ${r.path} ${name}: ${res.text}`);
    }

    res = await api(url, { method: r.method, token: op, raw: JSON.stringify({ name: 'x'.repeat(MAX_BODY + 10) }) });
    isError(res, 413);
    assert.equal(res.json.error.code, 'request.too_large');

    res = await api(url, { method: r.method, token: op, raw: 'name=x', headers: { 'content-type': 'text/plain' } });
    isError(res, 415);
  }
  assert.equal(await count(), before, 'bad input changed data');
});

test('every route: missing or bad bearer tokens where one is required', async () => {
  for (const r of routes.filter((x) => x.op.security)) {
    const url = `${s.url}${concrete(r.path)}`;
    const body = r.op.requestBody ? {} : undefined;
    let res = await api(url, { method: r.method, body });
    isError(res, 401);
    assert.equal(res.json.error.code, 'auth.required');
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    res = await api(url, { method: r.method, body, token: `${op.slice(0, -4)}AAAA` });
    isError(res, 401);
    assert.equal(res.json.error.code, 'auth.invalid_token');
    res = await api(url, { method: r.method, body, headers: { authorization: 'Basic b3BlcmF0b3I6eA==' } });
    isError(res, 401);
    const [h, p] = op.split('.');
    res = await api(url, { method: r.method, body, token: `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.` });
    isError(res, 401);
    assert.ok(h);
  }
});

test('an expired token is refused', async () => {
  const expired = s.token({ roles: ['operator'], ttl: 1 });
  await new Promise((r) => setTimeout(r, 1100 + 30000)); // past exp plus the gateway's 30 s leeway
  const res = await api(`${s.url}/api/v1/schools`, { token: expired });
  isError(res, 401);
  assert.match(res.json.error.message, /expired/i);
});

test('a caller without the operator role is refused by the service', async () => {
  const teacher = s.token({ roles: ['teacher'] });
  const res = await api(`${s.url}/api/v1/schools`, { method: 'POST', token: teacher, body: { name: 'Nope', kind: 'SCHOOL' } });
  isError(res, 403);
  assert.equal(res.json.error.code, 'identity.forbidden');
});

test('invalid values are refused with the field named', async () => {
  const cases = [
    [{ name: '', kind: 'SCHOOL' }, 'name'],
    [{ name: 'a'.repeat(201), kind: 'SCHOOL' }, 'name'],
    [{ name: 'Tab\tin name', kind: 'SCHOOL' }, 'name'],
    [{ name: 'Ok', kind: 'SCHOOL_KIND_UNSPECIFIED' }, 'kind'],
    [{ name: 'Ok', kind: 'CASTLE' }, 'kind'],
    [{ name: 'Ok', kind: 'SCHOOL', kennung: 'has space' }, 'kennung'],
  ];
  for (const [body, field] of cases) {
    const res = await api(`${s.url}/api/v1/schools`, { method: 'POST', token: op, body });
    isError(res, 400);
    assert.equal(res.json.error.field, field, res.text);
  }
  let res = await api(`${s.url}/api/v1/schools?page.limit=abc`, { token: op });
  isError(res, 400);
  assert.equal(res.json.error.field, 'page.limit');
  res = await api(`${s.url}/api/v1/schools?page.cursor=%ZZ`, { token: op });
  isError(res, 400);
  res = await api(`${s.url}/api/v1/schools?bogus=1`, { token: op });
  isError(res, 400);
  assert.equal(res.json.error.field, 'bogus');
});

test('unknown paths and methods', async () => {
  isError(await api(`${s.url}/api/v1/nothing`), 404);
  const res = await api(`${s.url}/api/v1/schools`, { method: 'DELETE', token: op });
  isError(res, 405);
  assert.match(res.headers.get('allow'), /GET/);
});

test('the gateway keeps serving after all of it', async () => {
  assert.equal((await api(`${s.url}/healthz`)).status, 200);
  assert.equal((await api(`${s.url}/readyz`)).status, 200);
});

test('query parameters that are not UTF-8 or too long are refused, never dropped', async () => {
  let res = await api(`${s.url}/api/v1/schools?name_prefix=%FF%FE`, { token: op });
  isError(res, 400);
  assert.equal(res.json.error.code, 'request.malformed_query');
  res = await api(`${s.url}/api/v1/schools?%FF.limit=1`, { token: op });
  isError(res, 400);
  res = await api(`${s.url}/api/v1/schools?${'k'.repeat(200)}=1`, { token: op });
  isError(res, 400);
  res = await api(`${s.url}/api/v1/schools?page.limit=1&page.limit=2`, { token: op });
  isError(res, 400);
  assert.equal(res.json.error.field, 'page.limit');
});
