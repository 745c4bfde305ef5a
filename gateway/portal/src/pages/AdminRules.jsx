// The school admin's chat rules: who may start a direct chat with whom,
// who may create rooms, how long messages are kept, or back to a preset
// (GET/PUT /api/v1/schools/{school_id}/messaging-policy, docs/messaging.md
// "Policies"). Loaded when the tab is opened (Admin.jsx).
import { useEffect, useState } from 'preact/hooks';
import { t, addTexts } from '../i18n.js';
import { api } from '../api.js';
import { AuthError } from '../auth.js';
import { Alert, Loading, Field, errorText } from '../ui.jsx';

const ROLES = ['pupil', 'teacher', 'parent', 'staff', 'head', 'school_admin'];
const PRESETS = ['school', 'kita', 'community'];
const MAX_DAYS = 3650;

addTexts({
  de: {
    rules_title: 'Regeln für den Chat',
    rules_lead: 'Was hier steht, gilt für alle Chats der Schule. Jede Änderung wird protokolliert.',
    rules_preset: 'Grundlage: {preset}',
    rules_customized: 'angepasst',
    preset_school: 'Schule',
    preset_kita: 'Kita',
    preset_community: 'Gemeinschaft (Verein, Genossenschaft)',
    rules_direct: 'Direktchats',
    rules_direct_lead: 'Wer darf mit wem einen Direktchat beginnen? Alles, was nicht angekreuzt ist, lehnt Kreide ab.',
    rules_direct_from: '{role} dürfen Direktchats beginnen mit:',
    rules_creators: 'Wer darf Gruppenchats und Ankündigungskanäle anlegen?',
    rules_retention: 'Aufbewahrung',
    rules_retention_label: 'Nachrichten löschen nach (Tagen)',
    rules_retention_hint: '0 heißt: behalten, bis jemand sie löscht. Höchstens 3650. Ein Chat kann eine kürzere eigene Frist haben; es gilt immer die kürzere.',
    rules_retention_invalid: 'Bitte eine ganze Zahl von 0 bis 3650.',
    rules_retention_now: 'Jetzt: Nachrichten werden nach {n} Tagen gelöscht.',
    rules_retention_never: 'Jetzt: Nachrichten bleiben, bis jemand sie löscht.',
    rules_save: 'Regeln speichern',
    rules_saved: 'Gespeichert.',
    rules_reset: 'Auf Vorgabe zurücksetzen',
    rules_reset_lead: 'Setzt Direktchats und Gruppenchat-Rechte auf die Vorgabe zurück. Die Aufbewahrung bleibt.',
    rules_reset_which: 'Vorgabe',
    rules_reset_button: 'Vorgabe übernehmen',
    rules_updated: 'Zuletzt geändert: {when}',
    plural_pupil: 'Schüler*innen',
    plural_teacher: 'Lehrkräfte',
    plural_parent: 'Eltern',
    plural_staff: 'Mitarbeitende',
    plural_head: 'Schulleitung',
    plural_school_admin: 'Schul-Admins',
  },
  en: {
    rules_title: 'Chat rules',
    rules_lead: 'These rules apply to every chat of the school. Every change is logged.',
    rules_preset: 'Based on: {preset}',
    rules_customized: 'customised',
    preset_school: 'School',
    preset_kita: 'Kita',
    preset_community: 'Community (club, co-operative)',
    rules_direct: 'Direct chats',
    rules_direct_lead: 'Who may start a direct chat with whom? Kreide refuses everything that is not ticked.',
    rules_direct_from: '{role} may start direct chats with:',
    rules_creators: 'Who may create group chats and announcement channels?',
    rules_retention: 'Retention',
    rules_retention_label: 'Delete messages after (days)',
    rules_retention_hint: '0 means: keep them until someone deletes them. At most 3650. A chat may have a shorter limit of its own; the shorter one always applies.',
    rules_retention_invalid: 'Please a whole number from 0 to 3650.',
    rules_retention_now: 'Now: messages are deleted after {n} days.',
    rules_retention_never: 'Now: messages stay until someone deletes them.',
    rules_save: 'Save rules',
    rules_saved: 'Saved.',
    rules_reset: 'Back to a preset',
    rules_reset_lead: 'Sets direct chats and who may create chats back to the preset. Retention stays.',
    rules_reset_which: 'Preset',
    rules_reset_button: 'Use preset',
    rules_updated: 'Last changed: {when}',
    plural_pupil: 'Pupils',
    plural_teacher: 'Teachers',
    plural_parent: 'Parents',
    plural_staff: 'Staff',
    plural_head: 'Heads',
    plural_school_admin: 'School admins',
  },
});

const key = (from, to) => `${from}>${to}`;

export function AdminRules({ schoolId }) {
  const [policy, setPolicy] = useState(null);
  const [direct, setDirect] = useState(new Set());
  const [creators, setCreators] = useState(new Set());
  const [days, setDays] = useState('0');
  const [preset, setPreset] = useState('school');
  const [error, setError] = useState(null);
  const [daysError, setDaysError] = useState(false);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  const path = `/api/v1/schools/${encodeURIComponent(schoolId)}/messaging-policy`;

  function show(p) {
    setPolicy(p);
    setDirect(new Set((p.direct_rules || []).map((r) => key(r.from, r.to))));
    setCreators(new Set(p.room_creators || []));
    setDays(String(p.retention_days || 0));
    setPreset(PRESETS.includes(p.preset) ? p.preset : 'school');
  }

  useEffect(() => {
    api(path).then(show).catch((e) => { if (!(e instanceof AuthError)) setError(errorText(e)); });
  }, [schoolId]);

  async function put(body) {
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      show(await api(path, { method: 'PUT', body }));
      setSaved(true);
    } catch (e) {
      if (!(e instanceof AuthError)) setError(e.field === 'retention_days' ? t('rules_retention_invalid') : errorText(e));
    }
    setBusy(false);
  }

  function save(e) {
    e.preventDefault();
    const n = Number(days);
    if (!/^\d+$/.test(days.trim()) || n > MAX_DAYS) { setDaysError(true); return; }
    setDaysError(false);
    const rules = [...direct].map((k) => { const [from, to] = k.split('>'); return { from, to }; });
    put({
      set_direct_rules: true, direct_rules: rules,
      set_room_creators: true, room_creators: ROLES.filter((r) => creators.has(r)),
      set_retention: true, retention_days: n,
    });
  }

  const flip = (set, setter, k) => {
    const next = new Set(set);
    if (next.has(k)) next.delete(k); else next.add(k);
    setter(next);
    setSaved(false);
  };

  if (!policy) return error ? <Alert>{error}</Alert> : <Loading />;
  return (
    <section aria-labelledby="rules-title" class="rules-admin">
      <h2 id="rules-title">{t('rules_title')}</h2>
      <p>{t('rules_lead')}</p>
      <p class="muted">{t('rules_preset', { preset: t(`preset_${policy.preset}`) })}{policy.customized ? ` (${t('rules_customized')})` : ''}
        {policy.updated_at ? ` · ${t('rules_updated', { when: new Date(policy.updated_at).toLocaleString() })}` : ''}</p>
      <form onSubmit={save}>
        <h3>{t('rules_direct')}</h3>
        <p>{t('rules_direct_lead')}</p>
        {ROLES.map((from) => (
          <fieldset class="choice" key={from}>
            <legend>{t('rules_direct_from', { role: t(`plural_${from}`) })}</legend>
            <div class="checks">
              {ROLES.map((to) => {
                const id = `direct-${from}-${to}`;
                return (
                  <p class="check" key={to}>
                    <input type="checkbox" id={id} checked={direct.has(key(from, to))} onChange={() => flip(direct, setDirect, key(from, to))} />
                    <label for={id}>{t(`plural_${to}`)}</label>
                  </p>
                );
              })}
            </div>
          </fieldset>
        ))}
        <fieldset class="choice">
          <legend>{t('rules_creators')}</legend>
          <div class="checks">
            {ROLES.map((r) => (
              <p class="check" key={r}>
                <input type="checkbox" id={`creator-${r}`} checked={creators.has(r)} onChange={() => flip(creators, setCreators, r)} />
                <label for={`creator-${r}`}>{t(`plural_${r}`)}</label>
              </p>
            ))}
          </div>
        </fieldset>
        <h3>{t('rules_retention')}</h3>
        <p>{policy.retention_days ? t('rules_retention_now', { n: policy.retention_days }) : t('rules_retention_never')}</p>
        <Field id="retention-days" label={t('rules_retention_label')} hint={t('rules_retention_hint')} value={days} inputMode="numeric"
          error={daysError ? t('rules_retention_invalid') : ''} onInput={(e) => { setDays(e.currentTarget.value); setSaved(false); }} />
        {error && <Alert>{error}</Alert>}
        {saved && <Alert kind="success">{t('rules_saved')}</Alert>}
        <button type="submit" class="primary" disabled={busy}>{t('rules_save')}</button>
      </form>
      <h3>{t('rules_reset')}</h3>
      <p>{t('rules_reset_lead')}</p>
      <form class="search" onSubmit={(e) => { e.preventDefault(); put({ preset }); }}>
        <div class="field">
          <label for="rules-preset">{t('rules_reset_which')}</label>
          <select id="rules-preset" value={preset} onChange={(e) => setPreset(e.currentTarget.value)}>
            {PRESETS.map((p) => <option key={p} value={p}>{t(`preset_${p}`)}</option>)}
          </select>
        </div>
        <button type="submit" class="secondary" disabled={busy}>{t('rules_reset_button')}</button>
      </form>
    </section>
  );
}
