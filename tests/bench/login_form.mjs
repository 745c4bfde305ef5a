// What a browser holds when it submits Kreide's sign-in form, for the login
// benchmark of `make bench`: opens /oidc/authorize as a relying party would
// send a person there, and reads the form's hidden fields (`csrf`, the
// sealed `request`) and the `kreide_csrf` cookie. The CSRF check is a double
// submit (cookie = field), so one pair serves every POST of the run, as it
// would for one browser signing in again and again.
//
//   node login_form.mjs BASE CLIENT_ID REDIRECT_URI PASSWORD
//
// Prints two lines: the Cookie header line, and the form body for
// tests/bench/post_load with `{user}` where the user name goes.
const [base, clientId, redirectUri, password] = process.argv.slice(2);
if (!base || !clientId || !redirectUri || !password) {
  console.error('usage: node login_form.mjs BASE CLIENT_ID REDIRECT_URI PASSWORD');
  process.exit(2);
}

const url = new URL('/oidc/authorize', base);
url.search = new URLSearchParams({
  response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope: 'openid', state: 'bench', nonce: 'bench',
});
const res = await fetch(url, { redirect: 'manual' });
const html = await res.text();
const field = (name) => {
  const m = new RegExp(`<input[^>]*name="${name}"[^>]*value="([^"]*)"`).exec(html)
    ?? new RegExp(`<input[^>]*value="([^"]*)"[^>]*name="${name}"`).exec(html);
  // Attribute values come HTML-escaped.
  return m && m[1].replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&lt;', '<').replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
};
const cookie = res.headers.getSetCookie().map((c) => c.split(';')[0]).find((c) => c.startsWith('kreide_csrf='));
const csrf = field('csrf');
const request = field('request');
if (res.status !== 200 || !cookie || !csrf || !request) {
  console.error(`login_form: no sign-in form at ${url} (status ${res.status}, cookie ${Boolean(cookie)}, `
    + `csrf ${Boolean(csrf)}, request ${Boolean(request)})`);
  process.exit(1);
}
const enc = encodeURIComponent;
console.log(`Cookie: ${cookie}`);
console.log(`username={user}&password=${enc(password)}&csrf=${enc(csrf)}&request=${enc(request)}`);
