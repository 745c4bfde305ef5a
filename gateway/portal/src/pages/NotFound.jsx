// A path the portal does not know.
import { t } from '../i18n.js';
import { Page, Link } from '../ui.jsx';

export function NotFound() {
  return (
    <Page title={t('page_not_found')}>
      <p><Link href="/">{t('to_start')}</Link></p>
    </Page>
  );
}
