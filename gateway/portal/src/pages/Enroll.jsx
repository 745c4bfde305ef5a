// First login and password reset: user name, the one-time code from the
// school, a new password twice (POST /api/v1/enroll, docs/credentials.md).
import { useState } from 'preact/hooks';
import { t, has } from '../i18n.js';
import { publicApi } from '../api.js';
import { signIn, AuthError } from '../auth.js';
import { Page, Field, Alert, Link } from '../ui.jsx';

export function Enroll() {
  const params = new URLSearchParams(location.search);
  const [form, setForm] = useState({ username: params.get('username') || '', code: '', password: '', repeat: '' });
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState(null);
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });

  async function submit(e) {
    e.preventDefault();
    const errs = {};
    for (const k of ['username', 'code', 'password', 'repeat']) if (!form[k].trim()) errs[k] = t('err_required');
    if (!errs.repeat && !errs.password && form.password !== form.repeat) errs.repeat = t('err_mismatch');
    setErrors(errs);
    if (Object.keys(errs).length) {
      focusFirst(errs);
      return;
    }
    setBusy(true);
    try {
      const r = await publicApi('/api/v1/enroll', {
        method: 'POST',
        body: { username: form.username.trim().toLowerCase(), code: form.code.trim(), password: form.password },
      });
      setDone(r);
    } catch (err) {
      const field = err.field === 'password' ? 'password' : err.field === 'code' ? 'code' : err.field === 'username' ? 'username' : 'form';
      const text = err.status === 0 ? t('err_network') : has(err.code) ? t(err.code) : t('err_generic', { message: err.message });
      const next = { [field]: text };
      setErrors(next);
      focusFirst(next);
    }
    setBusy(false);
  }

  if (done) {
    return (
      <Page title={t('enroll_title')}>
        <Alert kind="success">{t('enroll_success')}</Alert>
        <div class="actions">
          <button type="button" class="primary" onClick={() => signIn({ prompt: 'login', loginHint: done.username }).catch((e) => {
            if (!(e instanceof AuthError && e.kind === 'redirecting')) setErrors({ form: t('not_configured') });
          })}>{t('enroll_signin_now')}</button>
        </div>
        {errors.form && <Alert>{errors.form}</Alert>}
      </Page>
    );
  }

  return (
    <Page title={t('enroll_title')}>
      <p class="lead">{t('enroll_lead')}</p>
      {errors.form && <Alert>{errors.form}</Alert>}
      <form onSubmit={submit} noValidate>
        <Field id="username" label={t('username')} value={form.username} onInput={set('username')} error={errors.username}
          autocomplete="username" autocapitalize="none" spellcheck={false} required />
        <Field id="code" label={t('code')} hint={t('code_hint')} value={form.code} onInput={set('code')} error={errors.code}
          autocomplete="one-time-code" autocapitalize="characters" spellcheck={false} required />
        <div class="rules" id="password-rules">
          <p>{t('password_rules_title')}</p>
          <ul>
            <li>{t('password_rule_length')}</li>
            <li>{t('password_rule_sentence')}</li>
            <li>{t('password_rule_personal')}</li>
            <li>{t('password_rule_common')}</li>
          </ul>
        </div>
        <Field id="password" type="password" label={t('new_password')} value={form.password} onInput={set('password')}
          error={errors.password} autocomplete="new-password" required />
        <Field id="repeat" type="password" label={t('repeat_password')} value={form.repeat} onInput={set('repeat')}
          error={errors.repeat} autocomplete="new-password" required />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>{t('enroll_submit')}</button>
        </div>
      </form>
      <p><Link href="/forgot">{t('signin_forgot_link')}</Link></p>
    </Page>
  );
}

function focusFirst(errs) {
  const first = ['username', 'code', 'password', 'repeat'].find((k) => errs[k]);
  if (first) setTimeout(() => document.getElementById(first)?.focus(), 0);
}
