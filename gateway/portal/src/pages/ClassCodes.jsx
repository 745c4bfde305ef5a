// A teacher's view of a group they lead: a reset code for a pupil who forgot
// their password, shown large to read out or print
// (GET /api/v1/groups/{group_id}/members, POST /api/v1/users/{user_id}/codes).
import { useEffect, useState } from 'preact/hooks';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { AuthError } from '../auth.js';
import { Page, Link, Alert, Loading, CodeCard, errorText } from '../ui.jsx';

export async function allMembers(groupId) {
  const members = [];
  let cursor = '';
  for (let i = 0; i < 20; i++) {
    const q = new URLSearchParams({ 'page.limit': '500' });
    if (cursor) q.set('page.cursor', cursor);
    const r = await api(`/api/v1/groups/${encodeURIComponent(groupId)}/members?${q}`);
    members.push(...(r.members || []));
    cursor = r.page && r.page.next_cursor;
    if (!cursor) break;
  }
  return members;
}

export function personName(p) {
  return p.display_name || [p.given_name, p.family_name].filter(Boolean).join(' ') || p.username;
}

export function ClassCodes({ claims, schoolId, groupId }) {
  const school = (claims.schools || []).find((s) => s.school_id === schoolId);
  const group = school && (school.groups || []).find((g) => g.group_id === groupId);
  const title = t('class_title', { group: group ? group.name : '' });
  const [members, setMembers] = useState(null);
  const [error, setError] = useState(null);
  const [issued, setIssued] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    allMembers(groupId).then(setMembers).catch((e) => {
      if (!(e instanceof AuthError)) setError(errorText(e));
    });
  }, [groupId]);

  async function issue(m) {
    setBusy(true);
    setError(null);
    try {
      const code = await api(`/api/v1/users/${encodeURIComponent(m.user_id)}/codes`, {
        method: 'POST',
        body: { school_id: schoolId, purpose: 'RESET' },
      });
      setIssued({ code, person: { name: personName(m), username: m.username } });
    } catch (e) {
      if (!(e instanceof AuthError)) setError(errorText(e));
    }
    setBusy(false);
  }

  if (issued) {
    return (
      <Page title={title}>
        <CodeCard issued={issued.code} person={issued.person} onClose={() => setIssued(null)} />
      </Page>
    );
  }
  const pupils = (members || []).filter((m) => m.role !== 'LEADER');
  return (
    <Page title={title}>
      <p class="lead">{t('class_lead')}</p>
      {error && <Alert>{error}</Alert>}
      {!members && !error && <Loading />}
      {members && (
        <section aria-labelledby="members-title">
          <h2 id="members-title">{t('members')}</h2>
          {pupils.length === 0 ? <p>{t('no_members')}</p> : (
            <ul class="plain people">
              {pupils.map((m) => (
                <li key={m.user_id} class="person">
                  <span class="person-names"><strong>{personName(m)}</strong> <span class="muted">{m.username}</span></span>
                  <button type="button" disabled={busy} onClick={() => issue(m)}>{t('issue_reset', { name: personName(m) })}</button>
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
      <p><Link href="/">{t('back')}</Link></p>
    </Page>
  );
}
