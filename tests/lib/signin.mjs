// A scripted browser for the provider's sign-in pages: fetch with a cookie
// jar of its own, redirects followed by hand (so a test sees every hop and
// stops at the relying party's redirect URI instead of requesting it), and
// the login and consent forms filled in and posted the way a person's
// browser would: every hidden field echoed, the CSRF cookie sent back.
//
//   const { redirect } = await signIn(authorizationUrl, { username, password, redirectUri });
//   redirect.searchParams.get('code')

// Cookies per origin (scheme, host and port), name → value. Path and
// expiry attributes are not needed for one provider on loopback, except that
// a cookie set with Max-Age=0 or an expiry in the past is removed.
export class CookieJar {
  constructor() {
    this.origins = new Map();
  }

  // Takes every Set-Cookie of `res`, the answer to a request for `url`.
  store(url, res) {
    const origin = new URL(url).origin;
    if (!this.origins.has(origin)) this.origins.set(origin, new Map());
    const jar = this.origins.get(origin);
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const gone = attrs.some((a) => {
        const [k, v = ''] = a.trim().split('=');
        if (k.toLowerCase() === 'max-age') return Number(v) <= 0;
        if (k.toLowerCase() === 'expires') return Date.parse(v) <= Date.now();
        return false;
      });
      if (gone) jar.delete(name);
      else jar.set(name, value);
    }
  }

  // The Cookie header for a request to `url`, or undefined.
  header(url) {
    const jar = this.origins.get(new URL(url).origin);
    if (!jar || jar.size === 0) return undefined;
    return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  get(url, name) {
    return this.origins.get(new URL(url).origin)?.get(name);
  }

  set(url, name, value) {
    const origin = new URL(url).origin;
    if (!this.origins.has(origin)) this.origins.set(origin, new Map());
    this.origins.get(origin).set(name, value);
  }
}

// One request without following redirects; cookies sent and stored.
export async function request(jar, url, { method = 'GET', form, headers = {} } = {}) {
  const h = { ...headers };
  const cookie = jar.header(url);
  if (cookie) h.cookie = cookie;
  let body;
  if (form) {
    body = new URLSearchParams(form).toString();
    h['content-type'] = 'application/x-www-form-urlencoded';
  }
  const res = await fetch(url, { method, headers: h, body, redirect: 'manual' });
  jar.store(url, res);
  const text = await res.text();
  return { url, status: res.status, headers: res.headers, text, location: res.headers.get('location') };
}

// Requests `url` and follows redirects (as GET, at most 10) until an answer
// that is no redirect, or a redirect to a URL starting with `stopAt`, which
// is not requested. Returns { redirect: URL } in that case, else { page }
// (the last answer); `hops` lists every answer on the way.
export async function follow(jar, url, { stopAt, method = 'GET', form } = {}) {
  const hops = [];
  let r = await request(jar, url, { method, form });
  for (let i = 0; ; i++) {
    hops.push(r);
    if (r.status < 300 || r.status > 399 || !r.location) return { page: r, hops };
    const next = new URL(r.location, r.url);
    if (stopAt && next.href.startsWith(stopAt)) return { redirect: next, hops };
    if (i === 10) throw new Error(`more than 10 redirects from ${url}`);
    r = await request(jar, next.href);
  }
}

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const unescape = (s) => s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e) => {
  if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : Number(e.slice(1)));
  return ENTITIES[e.toLowerCase()] ?? m;
});
const attributes = (tag) => Object.fromEntries([...tag.matchAll(/([a-zA-Z_:-]+)="([^"]*)"/g)].map(([, k, v]) => [k.toLowerCase(), unescape(v)]));

// The forms of a page: [{ action, method, fields: {name: value} of the
// hidden inputs, inputs: [names of every input], buttons: [{name, value}] }].
export function forms(html) {
  return [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)].map(([, open, inner]) => {
    const a = attributes(open);
    const fields = {};
    const inputs = [];
    for (const [, tag] of inner.matchAll(/<input\b([^>]*)>/gi)) {
      const t = attributes(tag);
      if (!t.name) continue;
      inputs.push(t.name);
      if (t.type === 'hidden') fields[t.name] = t.value ?? '';
    }
    const buttons = [...inner.matchAll(/<button\b([^>]*)>/gi)].map(([, tag]) => attributes(tag)).filter((b) => b.name);
    return { action: a.action, method: (a.method || 'get').toLowerCase(), fields, inputs, buttons };
  });
}

// The page's form that posts to `path` (e.g. '/oidc/login'), or undefined.
export function formFor(page, path) {
  return forms(page.text).find((f) => f.action && new URL(f.action, page.url).pathname === path);
}

// Runs an authorization request in the browser `jar` (a new one when not
// given): follows redirects, signs in on the login page with `username`
// and `password` (and `totp` when the page asks for it), answers the
// consent page with `consent` ('allow' or 'deny'), until the provider
// redirects to `redirectUri`. Returns { jar, redirect: URL, hops, steps }
// (`steps`: the forms posted on the way, 'login' and 'consent'). Throws,
// with the page's text, when it ends on any other page (an error page, or
// the login page again after a wrong password).
export async function signIn(authorizationUrl, { username, password, totp, redirectUri, consent = 'allow', jar = new CookieJar() } = {}) {
  let r = await follow(jar, String(authorizationUrl), { stopAt: redirectUri });
  const hops = [...r.hops];
  const seen = new Set();
  const steps = [];
  while (!r.redirect) {
    const page = r.page;
    const login = formFor(page, '/oidc/login');
    const allow = formFor(page, '/oidc/consent');
    let action;
    let fields;
    if (login && !seen.has('login')) {
      seen.add('login');
      steps.push('login');
      if (username === undefined) throw new Error(`signIn: the provider asks for a login (${page.status})`);
      fields = { ...login.fields, username, password };
      if (login.inputs.includes('totp') && totp !== undefined) fields.totp = totp;
      action = login.action;
    } else if (allow && !seen.has('consent')) {
      seen.add('consent');
      steps.push('consent');
      fields = { ...allow.fields, decision: consent };
      action = allow.action;
    } else {
      const text = page.text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 400);
      const e = new Error(`signIn: ended on a page (${page.status}) instead of ${redirectUri}: ${text}`);
      e.page = page;
      throw e;
    }
    r = await follow(jar, new URL(action, page.url).href, { method: 'POST', form: fields, stopAt: redirectUri });
    hops.push(...r.hops);
  }
  return { jar, redirect: r.redirect, hops, steps };
}
