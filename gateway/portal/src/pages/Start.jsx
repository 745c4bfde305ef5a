// The start page without a signed-in account: sign in, first login with a
// code, forgotten password; and the accounts this device knows.
import { useState } from 'preact/hooks';
import { t } from '../i18n.js';
import { accounts, signIn, AuthError } from '../auth.js';
import { Page, Link, Alert } from '../ui.jsx';

export function Start({ notice, returnTo = '/' }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const known = accounts();

  async function go(opts) {
    setBusy(true);
    setError(null);
    try {
      await signIn({ returnTo, ...opts });
    } catch (e) {
      if (e instanceof AuthError && e.kind === 'redirecting') return;
      setBusy(false);
      setError(e instanceof AuthError && e.kind === 'not_configured' ? t('not_configured') : t('err_network'));
    }
  }

  return (
    <Page title={t('signin_title')}>
      <p class="lead">{t('tagline')}</p>
      {notice && <Alert kind="info">{notice}</Alert>}
      {error && <Alert>{error}</Alert>}
      {known.length > 0 && (
        <section aria-labelledby="known-title" class="card">
          <h2 id="known-title">{t('signin_known_accounts')}</h2>
          <ul class="plain">
            {known.map((a) => (
              <li key={a.sub}>
                <button type="button" class="account-button" disabled={busy}
                  onClick={() => go({ prompt: 'login', loginHint: a.username })}>
                  <span class="avatar" aria-hidden="true">{initials(a.name)}</span>
                  {t('signin_as', { name: a.name })}
                </button>
              </li>
            ))}
          </ul>
        </section>
      )}
      <p>{t('signin_lead')}</p>
      <div class="actions">
        <button type="button" class="primary" disabled={busy} onClick={() => go(known.length ? { prompt: 'login' } : {})}>
          {known.length ? t('signin_other') : t('signin_button')}
        </button>
      </div>
      {busy && <p role="status">{t('signin_in_progress')}</p>}
      <ul class="links">
        <li>{t('signin_first_time')} <Link href="/enroll">{t('signin_first_time_link')}</Link></li>
        <li><Link href="/forgot">{t('signin_forgot_link')}</Link></li>
      </ul>
    </Page>
  );
}

export function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/);
  return ((parts[0] || '?')[0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
}
