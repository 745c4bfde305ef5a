// Small building blocks shared by the pages.
import { useEffect, useRef, useState } from 'preact/hooks';
import { onLink } from './router.js';
import { t, formatDate } from './i18n.js';

export function Link({ href, children, class: cls, ...rest }) {
  return <a href={href} class={cls} onClick={onLink} {...rest}>{children}</a>;
}

// A page: its one <h1> takes the focus when another page opens, so a
// screen reader announces where a link led (not on the first page: there
// the browser's own start is right).
let firstPage = true;

export function Page({ title, children, wide }) {
  const h1 = useRef(null);
  useEffect(() => {
    document.title = `${title} · ${t('app_name')}`;
    if (firstPage) firstPage = false;
    else if (h1.current) h1.current.focus();
  }, [title]);
  return (
    <div class={wide ? 'page page-wide' : 'page'}>
      <h1 tabIndex={-1} ref={h1}>{title}</h1>
      {children}
    </div>
  );
}

// A form field with its label, hint and error, wired for assistive tech.
export function Field({ id, label, hint, error, ...input }) {
  const describedBy = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {hint && <p class="hint" id={`${id}-hint`}>{hint}</p>}
      <input id={id} name={id} aria-describedby={describedBy} aria-invalid={error ? 'true' : undefined} {...input} />
      {error && <p class="field-error" id={`${id}-error`}>{error}</p>}
    </div>
  );
}

export function Alert({ children, kind = 'error' }) {
  return <p class={`alert alert-${kind}`} role={kind === 'error' ? 'alert' : 'status'}>{children}</p>;
}

export function Loading() {
  return <p class="loading" role="status">{t('loading')}</p>;
}

// A one-time code, large enough to read out across a classroom and laid
// out to print alone on a page.
export function CodeCard({ issued, person, onClose }) {
  const closeRef = useRef(null);
  useEffect(() => { closeRef.current && closeRef.current.focus(); }, []);
  return (
    <section class="code-card" aria-labelledby="code-card-title">
      <h2 id="code-card-title">{t('code_for', { name: person.name })}</h2>
      {person.username && <p class="code-user">{t('code_user', { username: person.username })}</p>}
      <p class="code-big" aria-label={issued.code.split('').join(' ')}>{issued.code}</p>
      <p>{t('code_expires', { when: formatDate(issued.expires_at) })}</p>
      <p>{t('code_where', { url: `${location.origin}/enroll` })}</p>
      <p class="no-print">{t('code_new_replaces')}</p>
      <div class="actions no-print">
        <button type="button" onClick={() => window.print()}>{t('print')}</button>
        <button type="button" class="secondary" ref={closeRef} onClick={onClose}>{t('done')}</button>
      </div>
    </section>
  );
}

export function errorText(err) {
  if (!err) return '';
  if (err.code === 'network' || err.status === 0) return t('err_network');
  if (err.status === 403) return t('forbidden');
  if (err.status === 404) return t('not_found');
  return t('err_generic', { message: err.message });
}

// A part of the app that is loaded when first shown, so that the first
// page stays small: `load` returns the module (a dynamic import), `name`
// the component it exports. Until then, or if loading fails, a note.
export function Lazy({ load, name, ...props }) {
  const [mod, setMod] = useState(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let live = true;
    load().then((m) => live && setMod(m)).catch(() => live && setFailed(true));
    return () => { live = false; };
  }, [load]);
  if (failed) return <Alert>{t('err_network')}</Alert>;
  if (!mod) return <Loading />;
  const C = mod[name];
  return <C {...props} />;
}
