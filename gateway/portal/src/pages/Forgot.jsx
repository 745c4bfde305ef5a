// Forgotten password: Kreide has no e-mail addresses, so a person asks
// someone at the school for a reset code.
import { t } from '../i18n.js';
import { Page, Link } from '../ui.jsx';

export function Forgot() {
  return (
    <Page title={t('forgot_title')}>
      <p class="lead">{t('forgot_lead')}</p>
      <ul class="who">
        <li>{t('forgot_pupil')}</li>
        <li>{t('forgot_parent')}</li>
        <li>{t('forgot_teacher')}</li>
        <li>{t('forgot_admin')}</li>
      </ul>
      <p>{t('forgot_no_email')}</p>
      <p>{t('forgot_then')}</p>
      <p><Link href="/enroll" class="button-link">{t('forgot_use_code')}</Link></p>
      <p><Link href="/">{t('to_start')}</Link></p>
    </Page>
  );
}
