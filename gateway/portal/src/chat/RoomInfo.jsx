// A room's info: what kind of room it is, how long its history is kept,
// its members, and for moderators muting members and locking the room.
import { useEffect, useState } from 'preact/hooks';
import { t, formatDate } from '../i18n.js';
import { Link, Alert, Loading } from '../ui.jsx';
import { AuthError } from '../auth.js';
import { chatError, kindLabel } from './texts.js';
import { rights } from './Room.jsx';

export function RoomInfo({ store, room, claims }) {
  const me = claims.sub;
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const details = store.details.get(room.id);
  useEffect(() => { store.loadDetails(room.id).catch((e) => { if (!(e instanceof AuthError)) setError(chatError(e)); }); }, [room.id]);
  const r = rights(room);
  const days = room.effective_retention_days || 0;

  async function act(fn) {
    setBusy(true);
    setError(null);
    try {
      await fn();
      await store.loadDetails(room.id);
    } catch (e) {
      if (!(e instanceof AuthError)) setError(chatError(e));
    }
    setBusy(false);
  }

  const members = details ? [...(details.members || [])].sort((a, b) =>
    (b.role === 'MODERATOR') - (a.role === 'MODERATOR') || (a.display_name || '').localeCompare(b.display_name || '')) : null;
  return (
    <section class="room-info">
      <p><Link href={`/chat/${encodeURIComponent(room.id)}`} class="small-link">{t('chat_back_to_room', { room: store.roomName(room) })}</Link></p>
      <dl class="facts">
        <dt>{t('chat_info_kind')}</dt><dd>{kindLabel(room)}</dd>
        {room.topic && <><dt>{t('chat_info_topic')}</dt><dd>{room.topic}</dd></>}
        {room.created_at && <><dt>{t('chat_info_created')}</dt><dd>{formatDate(room.created_at)}</dd></>}
        <dt>{t('chat_info_state')}</dt><dd>{room.locked ? t('chat_locked') : t('chat_open')}</dd>
      </dl>

      <h2>{t('chat_retention_title')}</h2>
      <p class="alert alert-info retention-notice">
        {days ? t('chat_retention_days', { n: days }) : t('chat_retention_none')} {t('chat_retention_shared')}
        {room.retention_days && room.retention_days !== days ? ` ${t('chat_retention_room', { n: room.retention_days })}` : ''}
      </p>

      {r.moderator && (
        <>
          <h2>{t('chat_moderation')}</h2>
          <p>{room.locked ? t('chat_lock_explain_locked') : t('chat_lock_explain_open')}</p>
          <p><button type="button" disabled={busy} onClick={() => act(() => store.lock(room.id, !room.locked))}>
            {room.locked ? t('chat_unlock') : t('chat_lock')}</button></p>
        </>
      )}
      {error && <Alert>{error}</Alert>}

      <h2 id="members-title">{t('chat_members_title', { n: room.member_count || (members ? members.length : 0) })}</h2>
      {!members && !error && <Loading />}
      {members && (
        <ul class="plain people" aria-labelledby="members-title">
          {members.map((m) => {
            const name = m.display_name || t('chat_someone');
            return (
              <li key={m.user_id} class="person">
                <span class="person-names">
                  <strong>{name}</strong>{m.user_id === me ? ` (${t('chat_you')})` : ''}
                  <span class="muted">
                    {m.role === 'MODERATOR' ? ` · ${t('chat_moderator')}` : ''}
                    {m.muted ? ` · ${t('chat_muted')}` : ''}
                    {m.from_group ? ` · ${t('chat_from_group')}` : ''}
                  </span>
                </span>
                {r.moderator && m.role !== 'MODERATOR' && m.user_id !== me && room.kind !== 'DIRECT' && (
                  <button type="button" class="secondary" disabled={busy} onClick={() => act(() => store.mute(room.id, m.user_id, !m.muted))}>
                    {m.muted ? t('chat_unmute', { name }) : t('chat_mute', { name })}
                  </button>
                )}
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}
