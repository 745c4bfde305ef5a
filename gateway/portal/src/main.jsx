// The portal: routes, the frame around every page, and the start-up that
// gets the active account's tokens back after a reload (auth.js).
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './style.css';
import { t, lang, setLang } from './i18n.js';
import { useSignal } from './signal.js';
import { route, match } from './router.js';
import { session, resume, activeAccount, accounts, CALLBACK_PATH, AuthError } from './auth.js';
import { Link, Loading, Page, Lazy } from './ui.jsx';
import { Start, initials } from './pages/Start.jsx';
import { Callback } from './pages/Callback.jsx';
import { Launcher } from './pages/Launcher.jsx';
import { Accounts } from './pages/Accounts.jsx';
import { Enroll } from './pages/Enroll.jsx';
import { Forgot } from './pages/Forgot.jsx';
import { ClassCodes } from './pages/ClassCodes.jsx';
import { Admin } from './pages/Admin.jsx';
import { NotFound } from './pages/NotFound.jsx';

// The chat is loaded when it is first opened: the launcher stays small.
const loadChat = () => import('./chat/ChatApp.jsx');

// Pages that never wait for the active account's tokens at start.
const PUBLIC = ['/enroll', '/forgot', CALLBACK_PATH];

function Header() {
  const s = useSignal(session);
  const current = useSignal(lang);
  const known = accounts().length > 0;
  return (
    <header class="top">
      <a class="skip" href="#content">{t('skip_to_content')}</a>
      <Link href="/" class="brand">
        <img src="/icons/icon.svg" alt="" width="28" height="28" />
        <span>{t('app_name')}</span>
      </Link>
      <div class="top-tools">
        <label class="lang">
          <span class="visually-hidden">{t('language')}</span>
          <select value={current} onChange={(e) => setLang(e.currentTarget.value)}>
            <option value="de" lang="de">Deutsch</option>
            <option value="en" lang="en">English</option>
          </select>
        </label>
        {(s || known) && (
          <Link href="/accounts" class="account-chip">
            <span class="avatar" aria-hidden="true">{s ? initials(s.account.name) : '…'}</span>
            <span class="visually-hidden">{t('accounts')}: </span>
            <span class="account-chip-name">{s ? s.account.name : t('accounts')}</span>
          </Link>
        )}
      </div>
    </header>
  );
}

function Routes({ path, s }) {
  const p = path.split('?')[0];
  if (p === CALLBACK_PATH) return <Callback />;
  if (p === '/enroll') return <Enroll />;
  if (p === '/forgot') return <Forgot />;
  if (p === '/accounts') return <Accounts />;
  if (!s) return <Start returnTo={path} />;
  let m;
  if (p === '/') return <Launcher claims={s.claims} />;
  if (p === '/chat' || p.startsWith('/chat/')) return <Lazy load={loadChat} name="ChatApp" claims={s.claims} path={p} />;
  if ((m = match('/class/:school/:group', p))) return <ClassCodes claims={s.claims} schoolId={m.school} groupId={m.group} />;
  if ((m = match('/admin/:school', p))) return <Admin claims={s.claims} schoolId={m.school} />;
  return <NotFound />;
}

function App() {
  const path = useSignal(route);
  const s = useSignal(session);
  useSignal(lang);
  const [starting, setStarting] = useState(() => !PUBLIC.includes(path.split('?')[0]) && activeAccount() !== null);

  useEffect(() => {
    if (!starting) return;
    resume(path)
      .then(() => setStarting(false))
      .catch((e) => {
        if (e instanceof AuthError && e.kind === 'redirecting') return; // on the way to the provider
        setStarting(false);
      });
  }, []);

  return (
    <>
      <Header />
      <main id="content">
        {starting ? <Page title={t('signin_in_progress')}><Loading /></Page>
          // Each account gets a fresh tree: nothing one account loaded
          // survives a switch to another.
          : <Routes key={s ? s.account.sub : 'signed-out'} path={path} s={s} />}
      </main>
    </>
  );
}

document.documentElement.lang = lang.get();
render(<App />, document.getElementById('app'));

if ('serviceWorker' in navigator && location.protocol !== 'file:') {
  addEventListener('load', () => navigator.serviceWorker.register('/sw.js').catch(() => {}));
}
