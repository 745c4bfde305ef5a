// A school admin's area: the school's people and groups, enrollment and
// reset codes, and the chat rules with retention (AdminRules.jsx, loaded
// when its tab opens).
import { useEffect, useState } from 'preact/hooks';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { AuthError } from '../auth.js';
import { Page, Link, Alert, Loading, CodeCard, Field, Lazy, errorText } from '../ui.jsx';
import { allMembers, personName } from './ClassCodes.jsx';

const loadRules = () => import('./AdminRules.jsx');

export function Admin({ claims, schoolId }) {
  const school = (claims.schools || []).find((s) => s.school_id === schoolId);
  const title = t('admin_title', { school: school ? school.name || school.kennung : '' });
  const [tab, setTab] = useState('people');
  const [issued, setIssued] = useState(null);

  if (issued) {
    return (
      <Page title={title} wide>
        <CodeCard issued={issued.code} person={issued.person} onClose={() => setIssued(null)} />
      </Page>
    );
  }
  return (
    <Page title={title} wide>
      <div class="tabs" role="group" aria-label={title}>
        <button type="button" aria-pressed={tab === 'people' ? 'true' : 'false'} onClick={() => setTab('people')}>{t('admin_people')}</button>
        <button type="button" aria-pressed={tab === 'groups' ? 'true' : 'false'} onClick={() => setTab('groups')}>{t('admin_groups')}</button>
        <button type="button" aria-pressed={tab === 'rules' ? 'true' : 'false'} onClick={() => setTab('rules')}>{t('admin_rules')}</button>
      </div>
      {tab === 'people' && <People schoolId={schoolId} onIssued={setIssued} />}
      {tab === 'groups' && <Groups schoolId={schoolId} />}
      {tab === 'rules' && <Lazy load={loadRules} name="AdminRules" schoolId={schoolId} />}
      <p><Link href="/">{t('back')}</Link></p>
    </Page>
  );
}

function People({ schoolId, onIssued }) {
  const [q, setQ] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function load(query, cursor) {
    setBusy(true);
    setError(null);
    try {
      const p = new URLSearchParams({ 'page.limit': '50' });
      if (query) p.set('q', query);
      if (cursor) p.set('page.cursor', cursor);
      const r = await api(`/api/v1/schools/${encodeURIComponent(schoolId)}/directory?${p}`);
      setResult((prev) => ({
        people: cursor && prev ? [...prev.people, ...(r.people || [])] : r.people || [],
        next: r.page && r.page.next_cursor,
        query,
      }));
    } catch (e) {
      if (!(e instanceof AuthError)) setError(errorText(e));
    }
    setBusy(false);
  }
  useEffect(() => { load('', ''); }, [schoolId]);

  async function issue(person, purpose) {
    setBusy(true);
    setError(null);
    try {
      const code = await api(`/api/v1/users/${encodeURIComponent(person.user_id)}/codes`, {
        method: 'POST',
        body: { school_id: schoolId, purpose },
      });
      onIssued({ code, person: { name: personName(person), username: person.username } });
    } catch (e) {
      if (!(e instanceof AuthError)) setError(errorText(e));
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="people-title">
      <h2 id="people-title">{t('admin_people')}</h2>
      <form class="search" role="search" onSubmit={(e) => { e.preventDefault(); load(q.trim(), ''); }}>
        <Field id="people-q" label={t('search_people')} hint={t('search_hint')} value={q} type="search"
          onInput={(e) => setQ(e.currentTarget.value)} autocomplete="off" />
        <button type="submit" disabled={busy}>{t('search')}</button>
      </form>
      {error && <Alert>{error}</Alert>}
      {!result && !error && <Loading />}
      {result && (result.people.length === 0 ? <p>{t('no_people')}</p> : (
        <ul class="plain people">
          {result.people.map((p) => (
            <li key={p.user_id} class="person">
              <span class="person-names">
                <strong>{personName(p)}</strong> <span class="muted">{p.username}</span>
                <span class="muted"> · {(p.roles || []).map((r) => t(r)).join(', ')}</span>
              </span>
              <span class="person-actions">
                <button type="button" disabled={busy} onClick={() => issue(p, 'ENROLLMENT')}>{t('issue_enrollment', { name: personName(p) })}</button>
                <button type="button" class="secondary" disabled={busy} onClick={() => issue(p, 'RESET')}>{t('issue_reset', { name: personName(p) })}</button>
              </span>
            </li>
          ))}
        </ul>
      ))}
      {result && result.next && <button type="button" disabled={busy} onClick={() => load(result.query, result.next)}>{t('more')}</button>}
    </section>
  );
}

function Groups({ schoolId }) {
  const [groups, setGroups] = useState(null);
  const [error, setError] = useState(null);
  const [open, setOpen] = useState(null); // { group, members }

  useEffect(() => {
    api(`/api/v1/schools/${encodeURIComponent(schoolId)}/groups?page.limit=500`)
      .then((r) => setGroups(r.groups || []))
      .catch((e) => { if (!(e instanceof AuthError)) setError(errorText(e)); });
  }, [schoolId]);

  async function show(g) {
    setOpen({ group: g, members: null });
    try {
      setOpen({ group: g, members: await allMembers(g.id) });
    } catch (e) {
      if (!(e instanceof AuthError)) setError(errorText(e));
    }
  }

  return (
    <section aria-labelledby="groups-title">
      <h2 id="groups-title">{t('admin_groups')}</h2>
      {error && <Alert>{error}</Alert>}
      {!groups && !error && <Loading />}
      {groups && (groups.length === 0 ? <p>{t('no_groups')}</p> : (
        <ul class="plain people">
          {groups.map((g) => (
            <li key={g.id} class="person">
              <span class="person-names"><strong>{g.name}</strong> <span class="muted">{t(g.kind)}{g.school_year ? ` · ${g.school_year}` : ''}</span></span>
              <button type="button" class="secondary" aria-expanded={open && open.group.id === g.id ? 'true' : 'false'}
                onClick={() => (open && open.group.id === g.id ? setOpen(null) : show(g))}>{t('show_members', { group: g.name })}</button>
              {open && open.group.id === g.id && (
                <div class="members">
                  {!open.members ? <Loading /> : open.members.length === 0 ? <p>{t('no_members')}</p> : (
                    <ul>
                      {open.members.map((m) => <li key={m.user_id}>{personName(m)} <span class="muted">{m.username}{m.role === 'LEADER' ? ` · ${t('leader')}` : ''}</span></li>)}
                    </ul>
                  )}
                </div>
              )}
            </li>
          ))}
        </ul>
      ))}
    </section>
  );
}
