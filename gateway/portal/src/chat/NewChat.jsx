// Starting a chat: a direct chat with someone found in the school's
// directory, as far as the school's rules allow (the messaging service
// decides; its refusal is explained in plain words), or a new group room or
// announcement channel for those the school lets create rooms.
import { useEffect, useState } from 'preact/hooks';
import { t } from '../i18n.js';
import { api } from '../api.js';
import { AuthError } from '../auth.js';
import { navigate } from '../router.js';
import { Alert, Loading, Field, Link, errorText } from '../ui.jsx';
import { chatError, roleList } from './texts.js';

const enc = encodeURIComponent;

function personName(p) {
  return p.display_name || [p.given_name, p.family_name].filter(Boolean).join(' ') || p.username;
}

export function NewChat({ store, claims }) {
  const schools = Array.isArray(claims.schools) ? claims.schools : [];
  const [schoolId, setSchoolId] = useState(schools.length ? schools[0].school_id : '');
  const school = schools.find((s) => s.school_id === schoolId);
  const [policy, setPolicy] = useState(null);
  const [members, setMembers] = useState([]); // for a new room: [{ id, name }]

  useEffect(() => {
    setPolicy(null);
    setMembers([]);
    if (!schoolId) return;
    api(`/api/v1/schools/${enc(schoolId)}/messaging-policy`).then(setPolicy).catch(() => setPolicy(false));
  }, [schoolId]);

  if (!schools.length) return <p>{t('no_schools')}</p>;
  const myRoles = (school && school.roles) || [];
  const canTo = policy ? [...new Set((policy.direct_rules || []).filter((r) => myRoles.includes(r.from)).map((r) => r.to))] : [];
  const mayCreate = policy && (policy.room_creators || []).some((r) => myRoles.includes(r));

  return (
    <div class="new-chat">
      <p><Link href="/chat" class="small-link back-to-list">{t('chat_all')}</Link></p>
      {schools.length > 1 && (
        <div class="field">
          <label for="new-school">{t('chat_school')}</label>
          <select id="new-school" value={schoolId} onChange={(e) => setSchoolId(e.currentTarget.value)}>
            {schools.map((s) => <option key={s.school_id} value={s.school_id}>{s.name || s.kennung}</option>)}
          </select>
        </div>
      )}
      <section aria-labelledby="dm-title">
        <h2 id="dm-title">{t('chat_dm_title')}</h2>
        {policy && <p class="muted" id="dm-rules">{canTo.length ? t('chat_dm_rules', { roles: roleList(canTo) }) : t('chat_dm_rules_none')}</p>}
        <Directory schoolId={schoolId} me={claims.sub} actions={(p) => <StartDirect store={store} schoolId={schoolId} person={p} />} />
      </section>
      {mayCreate && <NewRoom store={store} school={school} members={members} setMembers={setMembers} />}
    </div>
  );
}

function Directory({ schoolId, me, actions, idPrefix = 'dir' }) {
  const [q, setQ] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function load(query) {
    setBusy(true);
    setError(null);
    try {
      const p = new URLSearchParams({ 'page.limit': '50' });
      if (query) p.set('q', query);
      const r = await api(`/api/v1/schools/${enc(schoolId)}/directory?${p}`);
      setResult((r.people || []).filter((x) => x.user_id !== me));
    } catch (e) {
      if (!(e instanceof AuthError)) setError(errorText(e));
    }
    setBusy(false);
  }
  useEffect(() => { setResult(null); load(''); }, [schoolId]);

  return (
    <div class="directory">
      <form class="search" role="search" onSubmit={(e) => { e.preventDefault(); load(q.trim()); }}>
        <Field id={`${idPrefix}-q`} label={t('search_people')} hint={t('search_hint')} value={q} type="search"
          onInput={(e) => setQ(e.currentTarget.value)} autocomplete="off" />
        <button type="submit" disabled={busy}>{t('search')}</button>
      </form>
      {error && <Alert>{error}</Alert>}
      {!result && !error && <Loading />}
      {result && (result.length === 0 ? <p>{t('no_people')}</p> : (
        <ul class="plain people">
          {result.map((p) => (
            <li key={p.user_id} class="person">
              <span class="person-names"><strong>{personName(p)}</strong>
                <span class="muted"> · {(p.roles || []).map((r) => t(r)).join(', ')}</span></span>
              {actions(p)}
            </li>
          ))}
        </ul>
      ))}
    </div>
  );
}

function StartDirect({ store, schoolId, person }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const name = personName(person);
  const errId = `dm-error-${person.user_id}`;
  async function start() {
    setBusy(true);
    setError(null);
    try {
      const room = await store.createRoom({ school_id: schoolId, kind: 'DIRECT', member_ids: [person.user_id] });
      navigate(`/chat/${enc(room.id)}`);
    } catch (e) {
      if (!(e instanceof AuthError)) setError(chatError(e));
      setBusy(false);
    }
  }
  return (
    <span class="person-actions">
      <button type="button" disabled={busy} aria-describedby={error ? errId : undefined} onClick={start}>{t('chat_dm_start', { name })}</button>
      {error && <span class="field-error dm-refused" id={errId} role="alert">{error}</span>}
    </span>
  );
}

function NewRoom({ store, school, members, setMembers }) {
  const [name, setName] = useState('');
  const [topic, setTopic] = useState('');
  const [kind, setKind] = useState('GROUP');
  const [groupId, setGroupId] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const led = (school.groups || []).filter((g) => g.role === 'leader');
  const follows = kind === 'ANNOUNCEMENT' && groupId;

  async function create(e) {
    e.preventDefault();
    if (!name.trim()) { setError(t('chat_room_name_missing')); return; }
    setBusy(true);
    setError(null);
    try {
      const body = { school_id: school.school_id, kind, name: name.trim() };
      if (topic.trim()) body.topic = topic.trim();
      if (follows) body.group_id = groupId;
      else if (members.length) body.member_ids = members.map((m) => m.id);
      const room = await store.createRoom(body);
      navigate(`/chat/${enc(room.id)}`);
    } catch (err) {
      if (!(err instanceof AuthError)) setError(chatError(err));
      setBusy(false);
    }
  }
  const toggle = (p) => {
    const id = p.user_id;
    setMembers(members.some((m) => m.id === id) ? members.filter((m) => m.id !== id) : [...members, { id, name: personName(p) }]);
  };
  return (
    <section aria-labelledby="new-room-title">
      <h2 id="new-room-title">{t('chat_new_room')}</h2>
      <form onSubmit={create}>
        <fieldset class="choice">
          <legend>{t('chat_room_kind')}</legend>
          <p class="check"><input type="radio" id="kind-group" name="kind" checked={kind === 'GROUP'} onChange={() => setKind('GROUP')} /> <label for="kind-group">{t('chat_kind_GROUP')}: {t('chat_kind_GROUP_explain')}</label></p>
          <p class="check"><input type="radio" id="kind-ann" name="kind" checked={kind === 'ANNOUNCEMENT'} onChange={() => setKind('ANNOUNCEMENT')} /> <label for="kind-ann">{t('chat_kind_ANNOUNCEMENT')}: {t('chat_kind_ANNOUNCEMENT_explain')}</label></p>
        </fieldset>
        <Field id="room-name" label={t('chat_room_name')} value={name} maxLength={200} onInput={(e) => setName(e.currentTarget.value)} />
        <Field id="room-topic" label={t('chat_room_topic')} value={topic} maxLength={1000} onInput={(e) => setTopic(e.currentTarget.value)} />
        {kind === 'ANNOUNCEMENT' && led.length > 0 && (
          <div class="field">
            <label for="room-group">{t('chat_room_follow')}</label>
            <p class="hint" id="room-group-hint">{t('chat_room_follow_hint')}</p>
            <select id="room-group" aria-describedby="room-group-hint" value={groupId} onChange={(e) => setGroupId(e.currentTarget.value)}>
              <option value="">{t('chat_room_follow_none')}</option>
              {led.map((g) => <option key={g.group_id} value={g.group_id}>{g.name}</option>)}
            </select>
          </div>
        )}
        {!follows && (
          <div class="field">
            <p id="room-members-label"><strong>{t('chat_room_members')}</strong></p>
            <p class="muted" aria-live="polite">{members.length ? members.map((m) => m.name).join(', ') : t('chat_room_members_none')}</p>
          </div>
        )}
        {error && <Alert>{error}</Alert>}
        <button type="submit" class="primary" disabled={busy}>{t('chat_room_create')}</button>
      </form>
      {!follows && (
        <Directory schoolId={school.school_id} me={store.me} idPrefix="room-dir" actions={(p) => {
          const added = members.some((m) => m.id === p.user_id);
          return (
            <button type="button" class="secondary" aria-pressed={added ? 'true' : 'false'} onClick={() => toggle(p)}>
              {t('chat_room_add', { name: personName(p) })}
            </button>
          );
        }} />
      )}
    </section>
  );
}
