// /auth/callback: the provider's answer to a sign-in.
import { useEffect, useState } from 'preact/hooks';
import { t } from '../i18n.js';
import { completeSignIn, signIn, resume, AuthError } from '../auth.js';
import { navigate } from '../router.js';
import { Page, Link, Alert, Loading } from '../ui.jsx';
import { Start } from './Start.jsx';

export function Callback() {
  const [outcome, setOutcome] = useState(null);
  useEffect(() => {
    const search = location.search;
    // The code must not stay in the address bar or the history.
    history.replaceState(null, '', location.pathname);
    completeSignIn(search)
      // The active account may still need its tokens (after a sign-out
      // of another one): got silently, like after a reload.
      .then(async (to) => { await resume(to); navigate(to, { replace: true }); })
      .catch((e) => {
        if (!(e instanceof AuthError)) return setOutcome({ kind: 'failed' });
        if (e.kind === 'redirecting') return; // on to the provider (a sign-out)
        if (e.kind === 'mismatch' && e.account) {
          // Another account's session answered: ask for this one's password.
          signIn({ prompt: 'login', loginHint: e.account.username, returnTo: e.returnTo }).catch(() => setOutcome({ kind: 'failed' }));
          return;
        }
        setOutcome(e);
      });
  }, []);

  if (!outcome) return <Page title={t('callback_title')}><Loading /></Page>;
  if (outcome.kind === 'login_required') {
    return <Start notice={outcome.account ? t('signin_again') : null} returnTo={outcome.returnTo} />;
  }
  const text = outcome.kind === 'denied' ? t('callback_denied') : outcome.kind === 'stale' ? t('callback_stale')
    : outcome.kind === 'not_configured' ? t('not_configured') : t('callback_failed');
  return (
    <Page title={t('callback_failed')}>
      <Alert>{text}</Alert>
      <p><Link href="/">{t('to_start')}</Link></p>
    </Page>
  );
}
