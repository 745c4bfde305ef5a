// The chat: the room list beside (on a phone: before) the open room, a
// room's info, and starting a new chat. Loaded only when the chat is
// opened (main.jsx), so the launcher stays small.
//
//   /chat                 the room list
//   /chat/new             a direct chat from the directory, or a new room
//   /chat/{room}          a room
//   /chat/{room}/info     its members, retention, moderation
import { useEffect, useMemo, useState } from 'preact/hooks';
import './chat.css';
import { t, addTexts } from '../i18n.js';
import { useSignal } from '../signal.js';
import { Page, Link, Alert, Loading, errorText } from '../ui.jsx';
import { texts, kindLabel } from './texts.js';
import { createStore } from './store.js';
import { Room } from './Room.jsx';
import { RoomInfo } from './RoomInfo.jsx';
import { NewChat } from './NewChat.jsx';

addTexts(texts);

export function ChatApp({ claims, path }) {
  const me = claims.sub;
  const store = useMemo(() => createStore(me), [me]);
  useEffect(() => {
    store.start();
    return () => store.stop();
  }, [store]);
  useSignal(store.version);

  const parts = path.split('?')[0].split('/').filter(Boolean).map((p) => { try { return decodeURIComponent(p); } catch { return ''; } });
  const sub = parts[1] || '';
  const isNew = sub === 'new';
  const roomId = !isNew ? sub : '';
  const info = parts[2] === 'info';
  const room = roomId ? store.rooms.get(roomId) : null;

  let title = t('chat_title');
  if (isNew) title = t('chat_new_title');
  else if (roomId) {
    const name = store.roomName(room);
    title = info ? t('chat_info_title', { room: name || '…' }) : name || t('chat_title');
  }

  let content;
  if (isNew) content = <NewChat store={store} claims={claims} />;
  else if (roomId && !room && store.roomsLoaded) content = <><Alert>{t('chat_room_gone')}</Alert><p><Link href="/chat">{t('chat_all')}</Link></p></>;
  else if (roomId && !room) content = <Loading />;
  else if (roomId && info) content = <RoomInfo store={store} room={room} claims={claims} />;
  else if (roomId) content = <Room key={roomId} store={store} room={room} claims={claims} />;
  else content = null;

  return (
    <Page title={title} wide>
      <div class={roomId || isNew ? 'chat chat-open' : 'chat'}>
        <RoomList store={store} openId={roomId} />
        <div class="chat-main">
          <Status store={store} />
          {content || <p class="empty chat-pick">{store.rooms.size ? t('chat_pick') : t('chat_none_yet')}</p>}
        </div>
      </div>
    </Page>
  );
}

function Status({ store }) {
  if (store.status === 'offline') return <p class="chat-status" role="status">{t('chat_offline')}</p>;
  return null;
}

function RoomList({ store, openId }) {
  const [q, setQ] = useState('');
  const rooms = store.sortedRooms();
  useEffect(() => {
    for (const r of rooms) if (r.kind === 'DIRECT' && !r.name) store.ensureDetails(r.id);
  }, [rooms.length]);
  const needle = q.trim().toLowerCase();
  const shown = needle ? rooms.filter((r) => (store.roomName(r) || '').toLowerCase().includes(needle)) : rooms;
  const unreadTotal = rooms.reduce((n, r) => n + (r.unread_count || 0), 0);
  return (
    <nav class="room-list" aria-labelledby="rooms-title">
      <div class="room-list-head">
        <h2 id="rooms-title">{t('chat_rooms')}{unreadTotal > 0 && <span class="visually-hidden"> ({t('chat_unread_n', { n: unreadTotal })})</span>}</h2>
        <Link href="/chat/new" class="button-link">{t('chat_new')}</Link>
      </div>
      <div class="field">
        <label for="room-filter">{t('chat_filter')}</label>
        <input id="room-filter" type="search" value={q} autocomplete="off" onInput={(e) => setQ(e.currentTarget.value)} />
      </div>
      {store.roomsError && <Alert>{errorText(store.roomsError)} <button type="button" onClick={() => store.reloadRooms()}>{t('retry')}</button></Alert>}
      {!store.roomsLoaded && !store.roomsError && <Loading />}
      {store.roomsLoaded && rooms.length === 0 && <p class="muted">{t('chat_no_rooms')}</p>}
      {store.roomsLoaded && rooms.length > 0 && shown.length === 0 && <p class="muted">{t('chat_no_match')}</p>}
      <ul class="plain rooms">
        {shown.map((r) => {
          const name = store.roomName(r) || t('chat_direct');
          const unread = r.unread_count || 0;
          return (
            <li key={r.id}>
              <Link href={`/chat/${encodeURIComponent(r.id)}`} class={openId === r.id ? 'room-link current' : 'room-link'}
                aria-current={openId === r.id ? 'page' : undefined}>
                <span class="room-link-names">
                  <span class="room-name">{name}</span>
                  <span class="room-kind">{kindLabel(r)}{r.locked ? ` · ${t('chat_locked_short')}` : ''}</span>
                </span>
                {unread > 0 && (
                  <span class={r.unread_mentions ? 'unread unread-mention' : 'unread'}>
                    <span aria-hidden="true">{unread >= 1000 ? '999+' : unread}</span>
                    <span class="visually-hidden">{r.unread_mentions ? t('chat_unread_mentions', { n: unread, m: r.unread_mentions }) : t('chat_unread_n', { n: unread })}</span>
                  </span>
                )}
              </Link>
            </li>
          );
        })}
      </ul>
    </nav>
  );
}
