// The chat arrives with the messaging service; until then an empty state.
import { t } from '../i18n.js';
import { Page, Link } from '../ui.jsx';

export function Chat() {
  return (
    <Page title={t('chat_title')}>
      <p class="empty">{t('chat_empty')}</p>
      <p><Link href="/">{t('back')}</Link></p>
    </Page>
  );
}

export function NotFound() {
  return (
    <Page title={t('page_not_found')}>
      <p><Link href="/">{t('to_start')}</Link></p>
    </Page>
  );
}
