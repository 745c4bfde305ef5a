// The JSON API (/api/v1, docs/gateway.md) as the active account.
import { accessToken, activeAccount, expire, AuthError } from './auth.js';

export class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (error && error.code) || '';
    this.field = (error && error.field) || '';
  }
}

async function send(path, { method = 'GET', body, token } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch {
    throw new ApiError(0, { code: 'network' });
  }
  const json = await res.json().catch(() => null);
  return { res, json };
}

// A route that needs no token (enrollment).
export async function publicApi(path, opts) {
  const { res, json } = await send(path, opts);
  if (!res.ok) throw new ApiError(res.status, json && json.error);
  return json;
}

// A route as the active account. An answer that arrives after the account
// was switched is dropped: it belongs to the other account.
export async function api(path, opts = {}) {
  const returnTo = location.pathname + location.search;
  const account = activeAccount();
  const token = await accessToken(returnTo);
  let { res, json } = await send(path, { ...opts, token });
  if (res.status === 401) {
    expire(account.sub);
    await accessToken(returnTo); // renews through the provider (navigates away)
  }
  const now = activeAccount();
  if (!now || now.sub !== account.sub) throw new AuthError('switched');
  if (!res.ok) throw new ApiError(res.status, json && json.error);
  return json;
}
