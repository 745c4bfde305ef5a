// Debian's Apache with mod_auth_openidc (libapache2-mod-auth-openidc,
// unmodified) as a relying party: it protects a page on loopback, and a
// person signs in with curl (a cookie jar, redirects followed, the login
// form posted), after which Apache runs the page as the person the ID token
// names, with the school claims in its environment.
//
// The test writes a minimal Apache configuration of its own (its own
// ServerRoot, pid file, logs and port; only the modules it needs) and runs
// `apache2 -DFOREGROUND`; the system's Apache is never touched. It is
// skipped only when Apache or the module is not installed (scripts/bootstrap
// installs both).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, readFileSync, chmodSync, rmSync, createWriteStream, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import os from 'node:os';
import { startSuite, api, freePort, until } from '../lib/kreide.mjs';
import { formFor } from '../lib/signin.mjs';

const MODULES = '/usr/lib/apache2/modules';
const APACHE = '/usr/sbin/apache2';
const missing = [APACHE, `${MODULES}/mod_auth_openidc.so`, '/usr/bin/curl'].filter((f) => !existsSync(f));
const skip = missing.length ? `not installed: ${missing.join(', ')} (scripts/bootstrap installs apache2 and libapache2-mod-auth-openidc)` : false;

let s;
let op;
let dir; // Apache's ServerRoot, the CGI and curl's cookie jar
let port;
let apache;
let apacheExit;
const ids = {};
const USER = { username: 'ole.olsen', password: 'apache darf mich sehen' };

async function post(path, body, token = op) {
  const r = await api(`${s.url}${path}`, { method: 'POST', token, body });
  assert.ok(r.status === 200 || r.status === 201, `${path}: ${r.status} ${r.text}`);
  return r.json;
}

// The page Apache protects: who Apache says is signed in, and the claims
// mod_auth_openidc put into the environment.
const WHOAMI = `#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf 'REMOTE_USER=%s\\n' "$REMOTE_USER"
env | grep '^OIDC_CLAIM_' | LC_ALL=C sort
`;

function apacheConfig({ clientId, clientSecret }) {
  const root = process.getuid() === 0;
  return `# Written by tests/interop/apache.test.mjs
ServerRoot "${dir}"
ServerName 127.0.0.1
Listen 127.0.0.1:${port}
PidFile "${dir}/httpd.pid"
DefaultRuntimeDir "${dir}"
ErrorLog "${dir}/error.log"
LogLevel warn auth_openidc:info
${root ? 'User www-data\nGroup www-data\n' : ''}
LoadModule mpm_prefork_module ${MODULES}/mod_mpm_prefork.so
LoadModule authn_core_module ${MODULES}/mod_authn_core.so
LoadModule authz_core_module ${MODULES}/mod_authz_core.so
LoadModule authz_user_module ${MODULES}/mod_authz_user.so
LoadModule alias_module ${MODULES}/mod_alias.so
LoadModule cgi_module ${MODULES}/mod_cgi.so
LoadModule auth_openidc_module ${MODULES}/mod_auth_openidc.so
StartServers 1
MinSpareServers 1
MaxSpareServers 2
DocumentRoot "${dir}/htdocs"

OIDCProviderMetadataURL ${s.url}/.well-known/openid-configuration
OIDCClientID ${clientId}
OIDCClientSecret ${clientSecret}
OIDCRedirectURI http://127.0.0.1:${port}/protected/redirect_uri
OIDCCryptoPassphrase ${randomBytes(24).toString('hex')}
OIDCScope "openid profile school"
OIDCRemoteUserClaim preferred_username

ScriptAlias /protected/ "${dir}/cgi/"
<Location /protected>
    AuthType openid-connect
    Require valid-user
</Location>
`;
}

before(async () => {
  if (skip) return;
  s = await startSuite({ name: 'interopapache' });
  op = s.token({ roles: ['operator'] });
  ids.school = (await post('/api/v1/schools', { name: 'Oberschule Lindenhof', kind: 'SCHOOL', kennung: '112233' })).id;
  ids.user = (await post('/api/v1/users', {
    username: USER.username, given_name: 'Ole', family_name: 'Olsen', contexts: [{ school_id: ids.school, role: 'PUPIL' }],
  })).id;
  const { code } = await post(`/api/v1/users/${ids.user}/codes`, { school_id: ids.school, purpose: 'ENROLLMENT' });
  await post('/api/v1/enroll', { username: USER.username, code, password: USER.password }, null);

  port = await freePort();
  const client = await post('/api/v1/oidc/clients', {
    name: 'Schulwebsite', type: 'CONFIDENTIAL', first_party: true,
    redirect_uris: [`http://127.0.0.1:${port}/protected/redirect_uri`], scopes: ['openid', 'profile', 'school'],
  });

  dir = mkdtempSync(path.join(os.tmpdir(), 'kreide-apache-'));
  chmodSync(dir, 0o755); // Apache's children run as www-data when we are root
  mkdirSync(path.join(dir, 'cgi'), { mode: 0o755 });
  mkdirSync(path.join(dir, 'htdocs'), { mode: 0o755 });
  writeFileSync(path.join(dir, 'cgi', 'whoami'), WHOAMI, { mode: 0o755 });
  writeFileSync(path.join(dir, 'httpd.conf'), apacheConfig({ clientId: client.client_id, clientSecret: client.client_secret }));
  execFileSync(APACHE, ['-t', '-f', path.join(dir, 'httpd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });

  const outDir = process.env.KREIDE_TEST_OUT || os.tmpdir();
  const log = createWriteStream(path.join(outDir, 'interopapache-apache2.log'), { flags: 'a' });
  // A process group of its own: when Apache shuts down it signals its whole
  // group, which must not include this test.
  apache = spawn(APACHE, ['-f', path.join(dir, 'httpd.conf'), '-DFOREGROUND'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  apache.stdout.pipe(log);
  apache.stderr.pipe(log);
  apacheExit = new Promise((resolve) => apache.once('exit', resolve));
  await until(async () => (await fetch(`http://127.0.0.1:${port}/`)).status > 0, { what: 'apache2 listening', timeoutMs: 15000 });
});

after(async () => {
  if (apache && apache.exitCode === null && apache.signalCode === null) {
    apache.kill('SIGTERM');
    await apacheExit;
  }
  if (dir) {
    // Keep Apache's log beside the suites' logs.
    const out = process.env.KREIDE_TEST_OUT;
    if (out && existsSync(path.join(dir, 'error.log'))) writeFileSync(path.join(out, 'interopapache-error.log'), readFileSync(path.join(dir, 'error.log')));
    rmSync(dir, { recursive: true, force: true });
  }
  await s?.stop();
});

// curl with the cookie jar in `dir`, following redirects unless `follow`
// is false; returns the status, body and URL it ended at, and where a
// redirect it did not follow points.
function curl(args, { follow = true } = {}) {
  const body = path.join(dir, 'body');
  const out = execFileSync('curl', ['-sS', ...(follow ? ['-L', '--max-redirs', '10'] : []),
    '-c', path.join(dir, 'cookies'), '-b', path.join(dir, 'cookies'),
    '-o', body, '-w', '%{http_code} %{url_effective} %{redirect_url}', ...args], { timeout: 30000 }).toString();
  const [status, url, location] = out.split(' ');
  return { status: Number(status), url, location, text: readFileSync(body, 'utf8') };
}

test('without a session, Apache sends the browser to the provider', { skip }, async () => {
  // curl, not fetch: Node's fetch says `Sec-Fetch-Mode: cors`, which
  // mod_auth_openidc answers with a 401 rather than a redirect.
  const { status, location } = curl([`http://127.0.0.1:${port}/protected/whoami`], { follow: false });
  assert.equal(status, 302, `apache2 answered ${status}; see ${dir}/error.log`);
  const to = new URL(location);
  assert.equal(to.origin + to.pathname, `${s.url}/oidc/authorize`);
  assert.equal(to.searchParams.get('redirect_uri'), `http://127.0.0.1:${port}/protected/redirect_uri`);
  assert.equal(to.searchParams.get('response_type'), 'code');
  assert.deepEqual(to.searchParams.get('scope').split(' ').sort(), ['openid', 'profile', 'school']);
});

test('a person signs in with curl and Apache sees their user name and school', { skip }, async () => {
  // Apache redirects to /oidc/authorize, which shows the login page.
  const login = curl([`http://127.0.0.1:${port}/protected/whoami`]);
  assert.equal(login.status, 200, login.text.slice(0, 500));
  assert.ok(login.url.startsWith(`${s.url}/`), login.url);
  const form = formFor(login, '/oidc/login');
  assert.ok(form, `no login form at ${login.url}: ${login.text.slice(0, 500)}`);
  assert.ok(form.fields.csrf && form.fields.request, JSON.stringify(form.fields));

  // Posting it: 303 to Apache's redirect URI with the code, Apache redeems
  // it and sends the browser back to the page it asked for.
  const fields = { ...form.fields, username: USER.username, password: USER.password };
  const page = curl([...Object.entries(fields).flatMap(([k, v]) => ['--data-urlencode', `${k}=${v}`]), new URL(form.action, login.url).href]);
  assert.equal(page.status, 200, `${page.url}: ${page.text.slice(0, 500)}`);
  assert.equal(page.url, `http://127.0.0.1:${port}/protected/whoami`);
  const env = Object.fromEntries(page.text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  assert.equal(env.REMOTE_USER, USER.username);
  assert.equal(env.OIDC_CLAIM_sub, ids.user);
  assert.equal(env.OIDC_CLAIM_preferred_username, USER.username);
  assert.equal(env.OIDC_CLAIM_name, 'Ole Olsen');
  assert.equal(env.OIDC_CLAIM_iss, s.url);
  // The school claims as the Schulconnex arrays of strings (mod_auth_openidc
  // 2.4.12 passes arrays of strings, not the array of objects in `schools`;
  // the CGI environment turns the colons of the names into underscores).
  assert.equal(env.OIDC_CLAIM_urn_schulconnex_de_personenkontext_organisation_kennung, '112233');
  assert.equal(env.OIDC_CLAIM_urn_schulconnex_de_personenkontext_rolle, 'Lern');

  // Apache's own session cookie now opens the page, without a round trip
  // to the provider.
  const again = curl([`http://127.0.0.1:${port}/protected/whoami`], { follow: false });
  assert.equal(again.status, 200, `${again.status} ${again.location}`);
  assert.match(again.text, new RegExp(`^REMOTE_USER=${USER.username.replace('.', '\\.')}$`, 'm'));
});
