// The chat's data for the signed-in account, in memory only: the rooms
// with unread counts, the loaded part of each room's timeline, who is
// typing. It is fed by the HTTP API (docs/messaging.md) and by the
// realtime socket (docs/realtime.md, socket.js); both are merged by the
// events' positions, so an event seen twice changes nothing.
//
// One store lives while the chat is open and belongs to one account: the
// app renders every page under the active account's key, so a switch
// drops the store, its socket and everything it loaded.
import { signal } from '../signal.js';
import { api, ApiError } from '../api.js';
import { AuthError } from '../auth.js';
import { connectSocket } from './socket.js';

const PAGE = 40;
const SEEN_MAX = 4000;
const TYPING_MS = 6000;

// A client transaction id: 1..64 of [A-Za-z0-9._~-], unique per sender
// (docs/messaging.md "Idempotent sends"). Chosen once per message, so a
// retry after a lost answer cannot send it twice.
export function newTxnId() {
  const r = crypto.getRandomValues(new Uint8Array(12));
  let s = '';
  for (const b of r) s += b.toString(36).padStart(2, '0');
  return `w${Date.now().toString(36)}.${s}`;
}

const pos = (v) => Number(v || 0);
const enc = encodeURIComponent;

export function createStore(me) {
  const version = signal(0);
  let bumpQueued = false;
  function bump() {
    if (bumpQueued) return;
    bumpQueued = true;
    queueMicrotask(() => {
      bumpQueued = false;
      version.set(version.get() + 1);
    });
  }

  const s = {
    me,
    version,
    rooms: new Map(),          // id -> Room (ListRooms / GetRoom)
    roomsLoaded: false,
    roomsError: null,
    details: new Map(),        // id -> GetRoom answer (members, pins)
    names: new Map(),          // user id -> display name
    timelines: new Map(),      // id -> timeline (below)
    typing: new Map(),         // room id -> Map(user id -> until)
    reported: new Set(),       // message ids reported to me as a moderator
    status: 'connecting',      // connecting | live | offline
    openRoom: null,            // the room on screen
    lastPosition: 0,           // the newest event applied: the socket's `after`
  };
  const seen = new Set();
  let socket = null;
  let closed = false;
  let roomsTimer = null;

  // --------------------------------------------------------------- rooms

  s.roomName = (room) => {
    if (!room) return '';
    if (room.name) return room.name;
    const d = s.details.get(room.id);
    if (d) {
      const other = (d.members || []).find((m) => m.user_id !== me);
      if (other) return other.display_name || '';
    }
    return '';
  };

  s.sortedRooms = () => [...s.rooms.values()].sort((a, b) => pos(b.last_position) - pos(a.last_position));

  async function loadRooms() {
    const list = [];
    let cursor = '';
    for (let i = 0; i < 10; i++) {
      const q = new URLSearchParams({ 'page.limit': '200' });
      if (cursor) q.set('page.cursor', cursor);
      const r = await api(`/api/v1/rooms?${q}`);
      list.push(...(r.rooms || []));
      cursor = r.page && r.page.next_cursor;
      if (!cursor) break;
    }
    const ids = new Set(list.map((r) => r.id));
    for (const id of [...s.rooms.keys()]) if (!ids.has(id)) s.rooms.delete(id);
    for (const r of list) {
      // The open room is being read: its count stays at zero.
      if (r.id === s.openRoom && document.visibilityState === 'visible') { r.unread_count = 0; r.unread_mentions = 0; }
      s.rooms.set(r.id, { ...s.rooms.get(r.id), ...r });
    }
    s.roomsLoaded = true;
    s.roomsError = null;
    bump();
    return list;
  }

  s.reloadRooms = () => loadRooms().catch((e) => {
    if (e instanceof AuthError) return;
    s.roomsError = e;
    bump();
  });

  function scheduleRooms() {
    clearTimeout(roomsTimer);
    roomsTimer = setTimeout(() => s.reloadRooms(), 300);
  }

  // GetRoom: members with names and roles, pins; direct rooms take the
  // other person's name from it.
  s.loadDetails = async (roomId) => {
    const d = await api(`/api/v1/rooms/${enc(roomId)}`);
    s.details.set(roomId, d);
    for (const m of d.members || []) if (m.display_name) s.names.set(m.user_id, m.display_name);
    const { members, pinned_message_ids, ...room } = d;
    s.rooms.set(roomId, { ...s.rooms.get(roomId), ...room });
    bump();
    return d;
  };
  const detailsLoading = new Set();
  s.ensureDetails = (roomId) => {
    if (s.details.has(roomId) || detailsLoading.has(roomId)) return;
    detailsLoading.add(roomId);
    s.loadDetails(roomId).catch(() => {}).finally(() => detailsLoading.delete(roomId));
  };

  s.name = (userId) => s.names.get(userId) || '';

  // ------------------------------------------------------------ timeline
  //
  // { msgs: Map(id -> { m: Message, asOf }), head, more (older messages
  //   exist), loading, error, pending: [{ txn, text, reply_to, mentions,
  //   failed }] }
  // A message's state is current as of `asOf` (the read's head, or the
  // event that carried it); an event about it counts only when newer.

  function timeline(roomId) {
    let tl = s.timelines.get(roomId);
    if (!tl) {
      tl = { msgs: new Map(), head: 0, more: false, loaded: false, loading: false, error: null, pending: [] };
      s.timelines.set(roomId, tl);
    }
    return tl;
  }
  s.timeline = (roomId) => s.timelines.get(roomId) || null;

  s.messages = (roomId) => {
    const tl = s.timelines.get(roomId);
    if (!tl) return [];
    return [...tl.msgs.values()].map((x) => x.m).sort((a, b) => pos(a.position) - pos(b.position));
  };
  s.message = (roomId, id) => {
    const tl = s.timelines.get(roomId);
    const x = tl && tl.msgs.get(id);
    return x ? x.m : null;
  };

  function putMessage(tl, m, asOf) {
    const old = tl.msgs.get(m.id);
    if (old && old.asOf > asOf) return;
    tl.msgs.set(m.id, { m, asOf });
  }

  // The newest page, or the page before the oldest loaded message.
  s.loadHistory = async (roomId, { older = false } = {}) => {
    const tl = timeline(roomId);
    if (tl.loading) return;
    tl.loading = true;
    tl.error = null;
    bump();
    try {
      const q = new URLSearchParams({ limit: String(PAGE), messages_only: 'true' });
      const list = s.messages(roomId);
      if (older && list.length) q.set('before', String(list[0].position));
      const r = await api(`/api/v1/rooms/${enc(roomId)}/events?${q}`);
      const head = pos(r.head);
      for (const e of r.events || []) if (e.message) putMessage(tl, e.message, head);
      tl.more = !!r.more; // older messages exist, either way
      tl.head = Math.max(tl.head, head);
      tl.loaded = true;
    } catch (e) {
      if (!(e instanceof AuthError)) tl.error = e;
    }
    tl.loading = false;
    bump();
  };

  // --------------------------------------------------------------- events

  function applyEvent(e) {
    const p = pos(e.position);
    if (!p || seen.has(p)) return;
    seen.add(p);
    if (seen.size > SEEN_MAX) {
      const drop = [...seen].sort((a, b) => a - b).slice(0, seen.size - SEEN_MAX / 2);
      for (const d of drop) seen.delete(d);
    }
    if (p > s.lastPosition) s.lastPosition = p;
    const room = s.rooms.get(e.room_id);
    const tl = s.timelines.get(e.room_id);
    const mine = e.sender_id === me;
    if (!room) {
      // A room this list does not know yet: someone added the person.
      scheduleRooms();
      bump();
      return;
    }
    if (p > pos(room.last_position)) room.last_position = String(p);
    const entry = tl && e.message_id ? tl.msgs.get(e.message_id) : null;
    const newer = entry && p > entry.asOf;
    switch (e.kind) {
      case 'MESSAGE':
        if (tl && e.message) putMessage(tl, e.message, p);
        if (tl) tl.head = Math.max(tl.head, p);
        if (!mine) {
          if (s.openRoom === e.room_id && document.visibilityState === 'visible') scheduleRead(e.room_id);
          else {
            room.unread_count = (room.unread_count || 0) + 1;
            if (e.message && (e.message.mentions || []).includes(me)) room.unread_mentions = (room.unread_mentions || 0) + 1;
          }
        }
        break;
      case 'MESSAGE_EDITED':
      case 'POLL_VOTED':
      case 'POLL_CLOSED':
        if (tl && e.message) putMessage(tl, e.message, p);
        break;
      case 'MESSAGE_DELETED':
        if (tl && e.message) putMessage(tl, e.message, p);
        else if (newer) entry.m = { ...entry.m, deleted: true, text: '', reactions: [], poll: undefined, attachments: [] };
        break;
      case 'REACTION_ADDED':
      case 'REACTION_REMOVED':
        if (newer) {
          const add = e.kind === 'REACTION_ADDED';
          const list = (entry.m.reactions || []).map((r) => ({ ...r }));
          let r = list.find((x) => x.key === e.reaction_key);
          if (!r && add) list.push((r = { key: e.reaction_key, count: 0, mine: false }));
          if (r) {
            r.count = Math.max(0, (r.count || 0) + (add ? 1 : -1));
            if (mine) r.mine = add;
          }
          entry.m = { ...entry.m, reactions: list.filter((x) => x.count > 0) };
          entry.asOf = p;
        }
        break;
      case 'MESSAGE_PINNED':
      case 'MESSAGE_UNPINNED':
        if (newer) entry.m = { ...entry.m, pinned: e.kind === 'MESSAGE_PINNED' };
        s.details.delete(e.room_id);
        break;
      case 'RECEIPT':
        if (mine) {
          room.last_read_position = e.read_up_to;
          if (pos(e.read_up_to) >= pos(room.last_position)) { room.unread_count = 0; room.unread_mentions = 0; } else scheduleRooms();
        } else readStatusChanged(e.room_id);
        break;
      case 'READ_CONFIRMED':
        if (mine && entry && entry.m.read_status) entry.m = { ...entry.m, read_status: { ...entry.m.read_status, confirmed_by_me: true } };
        else if (!mine) readStatusChanged(e.room_id);
        break;
      case 'MEMBER_LEFT':
        if (e.user_id === me) { s.rooms.delete(e.room_id); s.timelines.delete(e.room_id); }
        s.details.delete(e.room_id);
        break;
      case 'MEMBER_JOINED':
      case 'MEMBER_ROLE_CHANGED':
      case 'MEMBER_MUTED':
        if (e.user_id === me && e.kind === 'MEMBER_MUTED') room.muted = !!e.muted;
        if (e.user_id === me && e.kind === 'MEMBER_ROLE_CHANGED') room.my_role = e.member_role;
        s.details.delete(e.room_id);
        if (s.openRoom === e.room_id) s.ensureDetails(e.room_id);
        break;
      case 'ROOM_LOCKED':
        room.locked = !!e.locked;
        break;
      case 'ROOM_RETENTION_CHANGED':
        room.retention_days = e.retention_days || 0;
        scheduleRooms(); // the effective limit is the service's to work out
        break;
      case 'ROOM_RENAMED':
        room.name = e.name || room.name;
        break;
      default:
        break;
    }
    bump();
  }
  s.applyEvent = applyEvent;

  // Reads the stream over HTTP after `after` (a gap, or while the socket
  // is down) and merges it.
  async function catchUp(after) {
    let from = pos(after);
    for (let i = 0; i < 50; i++) {
      const r = await api(`/api/v1/events?after=${from}&limit=500`);
      const events = r.events || [];
      for (const e of events) applyEvent(e);
      if (!r.more || events.length === 0) return;
      from = pos(events[events.length - 1].position);
    }
  }

  // ----------------------------------------------------- reading, receipts

  const readTimers = new Map();
  function scheduleRead(roomId) {
    clearTimeout(readTimers.get(roomId));
    readTimers.set(roomId, setTimeout(() => s.markRead(roomId), 400));
  }

  s.markRead = async (roomId) => {
    const room = s.rooms.get(roomId);
    const tl = s.timelines.get(roomId);
    if (!room) return;
    const upTo = Math.max(pos(room.last_position), tl ? tl.head : 0);
    if (!upTo || upTo <= pos(room.last_read_position)) {
      if (room.unread_count) { room.unread_count = 0; room.unread_mentions = 0; bump(); }
      return;
    }
    room.unread_count = 0;
    room.unread_mentions = 0;
    bump();
    try {
      const r = await api(`/api/v1/rooms/${enc(roomId)}/read`, { method: 'POST', body: { position: String(upTo) } });
      room.last_read_position = r.last_read_position;
    } catch { /* the count comes back with the next list */ }
  };

  // "I have read this" on an announcement.
  s.confirm = async (roomId, m) => {
    await api(`/api/v1/rooms/${enc(roomId)}/read`, { method: 'POST', body: { position: String(m.position), confirm_message_id: m.id } });
    const tl = s.timelines.get(roomId);
    const x = tl && tl.msgs.get(m.id);
    if (x && x.m.read_status) x.m = { ...x.m, read_status: { ...x.m.read_status, confirmed_by_me: true } };
    bump();
  };

  // For the author and the moderators, "read by N of M" follows receipts
  // as they come: the open room's announcements are read again, at most
  // a few, at most every second.
  const statusTimers = new Map();
  function readStatusChanged(roomId) {
    if (roomId !== s.openRoom || statusTimers.has(roomId)) return;
    statusTimers.set(roomId, setTimeout(() => { statusTimers.delete(roomId); refreshReadStatus(roomId); }, 700));
  }
  async function refreshReadStatus(roomId) {
    const room = s.rooms.get(roomId);
    const tl = s.timelines.get(roomId);
    if (!room || !tl || room.kind !== 'ANNOUNCEMENT') return;
    const moderator = room.my_role === 'MODERATOR';
    const mineOnes = s.messages(roomId).filter((m) => m.read_status && !m.deleted && (moderator || m.sender_id === me)).slice(-8);
    await Promise.all(mineOnes.map(async (m) => {
      try {
        const r = await api(`/api/v1/messages/${enc(m.id)}/receipts`);
        const x = tl.msgs.get(m.id);
        if (x && r.status) x.m = { ...x.m, read_status: { ...r.status, confirmed_by_me: x.m.read_status.confirmed_by_me } };
      } catch { /* shown as it was */ }
    }));
    bump();
  }
  s.readStatus = (messageId) => api(`/api/v1/messages/${enc(messageId)}/receipts`);

  // ------------------------------------------------------------- sending

  // Sends a message with a client txn_id. The entry waits in `pending`
  // (shown as "sending") until the answer; when the answer is lost or the
  // server failed, it stays with `failed` and `retry` sends it again with
  // the same txn_id: the service answers the first event, never a second.
  s.send = async (roomId, { text, reply_to, mentions }) => {
    const tl = timeline(roomId);
    const item = { txn: newTxnId(), text, reply_to: reply_to || '', mentions: mentions || [], failed: false };
    tl.pending.push(item);
    bump();
    return deliver(roomId, item);
  };
  s.retry = (roomId, txn) => {
    const tl = timeline(roomId);
    const item = tl.pending.find((p) => p.txn === txn);
    if (!item) return Promise.resolve();
    item.failed = false;
    bump();
    return deliver(roomId, item);
  };
  s.discard = (roomId, txn) => {
    const tl = timeline(roomId);
    tl.pending = tl.pending.filter((p) => p.txn !== txn);
    bump();
  };
  async function deliver(roomId, item) {
    const tl = timeline(roomId);
    try {
      const body = { txn_id: item.txn, text: item.text };
      if (item.reply_to) body.reply_to = item.reply_to;
      if (item.mentions.length) body.mentions = item.mentions;
      const ev = await api(`/api/v1/rooms/${enc(roomId)}/messages`, { method: 'POST', body });
      tl.pending = tl.pending.filter((p) => p !== item);
      applyEvent(ev);
      bump();
      return null;
    } catch (e) {
      if (e instanceof AuthError) throw e;
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
        // Refused for good (muted, locked, bad text): not sent, nothing to retry.
        tl.pending = tl.pending.filter((p) => p !== item);
        bump();
        return e;
      }
      item.failed = true;
      bump();
      return e;
    }
  }

  s.createPoll = async (roomId, poll) => {
    const ev = await api(`/api/v1/rooms/${enc(roomId)}/polls`, { method: 'POST', body: { txn_id: newTxnId(), ...poll } });
    applyEvent(ev);
  };

  // A call whose answer is a message's new state (votes, closing a poll).
  function replaceMessage(roomId, m) {
    const tl = s.timelines.get(roomId);
    if (tl && m && m.id) {
      const x = tl.msgs.get(m.id);
      tl.msgs.set(m.id, { m, asOf: Math.max(x ? x.asOf : 0, s.lastPosition) });
      bump();
    }
  }
  s.vote = async (roomId, pollId, options) => {
    replaceMessage(roomId, await api(`/api/v1/polls/${enc(pollId)}/votes`, { method: 'POST', body: { options } }));
  };
  s.closePoll = async (roomId, pollId) => {
    replaceMessage(roomId, await api(`/api/v1/polls/${enc(pollId)}/close`, { method: 'POST', body: {} }));
  };

  // Answers that are events are merged like any other event.
  const asEvent = (p) => p.then((ev) => { if (ev && ev.position) applyEvent(ev); return ev; });
  s.react = (messageId, key) => asEvent(api(`/api/v1/messages/${enc(messageId)}/reactions`, { method: 'POST', body: { key } }));
  s.unreact = (messageId, key) => asEvent(api(`/api/v1/messages/${enc(messageId)}/reactions/${enc(key)}`, { method: 'DELETE' }));
  s.deleteMessage = (messageId) => asEvent(api(`/api/v1/messages/${enc(messageId)}`, { method: 'DELETE' }));
  s.removeMessage = (messageId, reason) => asEvent(api(`/api/v1/messages/${enc(messageId)}/removal`, { method: 'POST', body: reason ? { reason } : {} }));
  s.report = (messageId, reason) => api(`/api/v1/messages/${enc(messageId)}/reports`, { method: 'POST', body: { reason } });
  s.mute = (roomId, userId, muted) => asEvent(api(`/api/v1/rooms/${enc(roomId)}/members/${enc(userId)}/mute`, { method: 'POST', body: { muted } }));
  s.lock = (roomId, locked) => asEvent(api(`/api/v1/rooms/${enc(roomId)}/lock`, { method: 'POST', body: { locked } }));

  s.createRoom = async (body) => {
    const room = await api('/api/v1/rooms', { method: 'POST', body });
    const { members, pinned_message_ids, ...r } = room;
    s.details.set(room.id, room);
    for (const m of members || []) if (m.display_name) s.names.set(m.user_id, m.display_name);
    s.rooms.set(room.id, { ...s.rooms.get(room.id), ...r });
    bump();
    return room;
  };

  let typingSent = 0;
  s.typingNow = (roomId) => {
    const now = Date.now();
    if (now - typingSent < 4000) return;
    typingSent = now;
    if (socket) socket.send({ type: 'typing', room_id: roomId, typing: true });
  };
  s.typingIn = (roomId) => {
    const m = s.typing.get(roomId);
    if (!m) return [];
    const now = Date.now();
    return [...m].filter(([, until]) => until > now).map(([u]) => u);
  };

  // ---------------------------------------------------------- the socket

  function onFrame(f) {
    switch (f.type) {
      case 'event':
        if (f.event) applyEvent(f.event);
        break;
      case 'ready':
        if (pos(f.position) > s.lastPosition) s.lastPosition = pos(f.position);
        s.status = 'live';
        bump();
        break;
      case 'gap':
        catchUp(f.after).catch(() => {});
        break;
      case 'typing': {
        if (f.user_id === me) break;
        let m = s.typing.get(f.room_id);
        if (!m) s.typing.set(f.room_id, (m = new Map()));
        if (f.typing) m.set(f.user_id, Date.now() + TYPING_MS);
        else m.delete(f.user_id);
        bump();
        setTimeout(bump, TYPING_MS + 50);
        break;
      }
      case 'report':
        if (f.message_id) s.reported.add(f.message_id);
        bump();
        break;
      default:
        break;
    }
  }

  function onStatus(status) {
    s.status = status;
    bump();
  }

  // Rooms first: the newest position among them is where the socket's
  // replay starts, so nothing after the list is missed or seen twice.
  s.start = async () => {
    await loadRooms().catch((e) => { if (!(e instanceof AuthError)) { s.roomsError = e; bump(); } });
    if (closed) return;
    for (const r of s.rooms.values()) if (pos(r.last_position) > s.lastPosition) s.lastPosition = pos(r.last_position);
    socket = connectSocket({
      after: () => s.lastPosition,
      onFrame,
      onStatus,
      catchUp: () => (s.lastPosition ? catchUp(s.lastPosition) : loadRooms()),
    });
  };

  s.stop = () => {
    closed = true;
    clearTimeout(roomsTimer);
    for (const t of readTimers.values()) clearTimeout(t);
    for (const t of statusTimers.values()) clearTimeout(t);
    if (socket) socket.close();
  };

  s.open = (roomId) => {
    s.openRoom = roomId;
    if (roomId) scheduleRead(roomId);
  };

  return s;
}
