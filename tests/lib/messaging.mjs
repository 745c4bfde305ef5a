// Helpers for the messaging suites: a school with people and their tokens,
// and short calls of the messaging routes. Everything goes through the
// gateway's real API.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { api } from './kreide.mjs';

const ROLE_ENUM = {
  pupil: 'PUPIL', teacher: 'TEACHER', parent: 'PARENT', staff: 'STAFF', head: 'HEAD', school_admin: 'SCHOOL_ADMIN',
};

// Creates a school of `kind` and one user per entry of `people`
// ({alias: role}); returns {id, people: {alias: {id, role, token}}}.
export async function makeSchool(s, op, name, people, kind = 'SCHOOL') {
  const sc = await api(`${s.url}/api/v1/schools`, { method: 'POST', token: op, body: { name, kind } });
  assert.equal(sc.status, 201, sc.text);
  const school = { id: sc.json.id, people: {} };
  for (const [alias, role] of Object.entries(people)) {
    const username = `${alias}.${randomBytes(3).toString('hex')}`.toLowerCase();
    const u = await api(`${s.url}/api/v1/users`, {
      method: 'POST', token: op,
      body: { username, given_name: alias, family_name: name.split(' ')[0], contexts: [{ school_id: school.id, role: ROLE_ENUM[role] }] },
    });
    assert.equal(u.status, 201, u.text);
    school.people[alias] = {
      id: u.json.id, role, username, display: u.json.display_name,
      token: s.token({ sub: u.json.id, schools: [`${school.id}:${role}`] }),
    };
  }
  return school;
}

let txn = 0;
export const txnId = () => `t${Date.now().toString(36)}-${(txn++).toString(36)}`;

export function client(s) {
  const call = (method, path, token, body) => api(`${s.url}/api/v1${path}`, { method, token, body });
  return {
    get: (path, token) => call('GET', path, token),
    post: (path, token, body) => call('POST', path, token, body ?? {}),
    put: (path, token, body) => call('PUT', path, token, body ?? {}),
    patch: (path, token, body) => call('PATCH', path, token, body ?? {}),
    del: (path, token) => call('DELETE', path, token),
    async room(token, body) {
      const r = await call('POST', '/rooms', token, body);
      assert.equal(r.status, 201, r.text);
      return r.json;
    },
    async send(roomId, token, text, extra = {}) {
      const r = await call('POST', `/rooms/${roomId}/messages`, token, { txn_id: txnId(), text, ...extra });
      assert.equal(r.status, 201, r.text);
      return r.json;
    },
    async events(roomId, token, query = '') {
      const r = await call('GET', `/rooms/${roomId}/events${query}`, token);
      assert.equal(r.status, 200, r.text);
      return r.json;
    },
    async rooms(token, query = '') {
      const r = await call('GET', `/rooms${query}`, token);
      assert.equal(r.status, 200, r.text);
      return r.json.rooms;
    },
  };
}
