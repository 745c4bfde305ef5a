// The accounts on this device: switch, add, sign out of one.
import { useState } from 'preact/hooks';
import { t } from '../i18n.js';
import { accounts, activeAccount, session, switchTo, addAccount, signOut, AuthError } from '../auth.js';
import { useSignal } from '../signal.js';
import { Page, Alert } from '../ui.jsx';
import { initials } from './Start.jsx';

export function Accounts() {
  useSignal(session);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const list = accounts();
  const active = activeAccount();
  const signedIn = session.get();

  async function run(fn) {
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (e) {
      if (e instanceof AuthError && e.kind === 'redirecting') return;
      setError(e instanceof AuthError && e.kind === 'not_configured' ? t('not_configured') : t('err_network'));
    }
    setBusy(false);
  }

  return (
    <Page title={t('accounts_title')}>
      <p class="lead">{t('accounts_lead')}</p>
      {error && <Alert>{error}</Alert>}
      <ul class="plain account-list">
        {list.map((a) => {
          const isActive = signedIn && active && a.sub === active.sub;
          return (
            <li key={a.sub} class={isActive ? 'account active' : 'account'}>
              <span class="avatar" aria-hidden="true">{initials(a.name)}</span>
              <span class="account-names">
                <strong>{a.name}</strong>
                <span class="muted">{a.username}{isActive ? ` · ${t('account_active')}` : ''}</span>
              </span>
              <span class="account-actions">
                {!isActive && (
                  <button type="button" disabled={busy} onClick={() => run(() => switchTo(a.sub, '/'))}>
                    {t('account_switch', { name: a.name })}
                  </button>
                )}
                <button type="button" class="secondary" disabled={busy} onClick={() => run(() => signOut(a.sub))}>
                  {t('account_signout', { name: a.name })}
                </button>
              </span>
            </li>
          );
        })}
      </ul>
      <div class="actions">
        <button type="button" class="primary" disabled={busy} onClick={() => run(addAccount)}>{t('account_add')}</button>
      </div>
    </Page>
  );
}
