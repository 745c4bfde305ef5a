// One room: its timeline (older pages on request, new events live), the
// composer with replies, mentions and polls, reactions, announcements
// with read confirmations and "read by N of M", reporting and, for
// moderators, removing messages.
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { t, formatDate } from '../i18n.js';
import { Link, Alert, Loading, errorText } from '../ui.jsx';
import { AuthError } from '../auth.js';
import { navigate } from '../router.js';
import { Markdown } from './markdown.jsx';
import { chatError, kindLabel } from './texts.js';

export const REACTIONS = ['👍', '❤️', '😂', '😮', '🙏', '✅'];

// What the caller may do in the room (services/messaging/README.md).
export function rights(room) {
  const moderator = room.my_role === 'MODERATOR';
  return {
    moderator,
    post: !room.muted && (moderator || (!room.locked && room.kind !== 'ANNOUNCEMENT')),
    react: !room.muted && (moderator || !room.locked),
  };
}

function shortTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString(document.documentElement.lang === 'en' ? 'en-GB' : 'de-DE', { hour: '2-digit', minute: '2-digit' }) : formatDate(iso);
}

export function Room({ store, room, claims }) {
  const me = claims.sub;
  const tl = store.timeline(room.id);
  const r = rights(room);
  const [replyTo, setReplyTo] = useState(null);
  const composerRef = useRef(null);
  const atBottom = useRef(true);
  const prevHeight = useRef(null);

  useEffect(() => {
    store.open(room.id);
    store.loadDetails(room.id).catch(() => {});
    if (!tl || !tl.loaded) store.loadHistory(room.id);
    const onVisible = () => { if (document.visibilityState === 'visible') store.markRead(room.id); };
    document.addEventListener('visibilitychange', onVisible);
    const onScroll = () => {
      atBottom.current = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80;
    };
    addEventListener('scroll', onScroll, { passive: true });
    return () => {
      store.open(null);
      document.removeEventListener('visibilitychange', onVisible);
      removeEventListener('scroll', onScroll);
    };
  }, [room.id]);

  const messages = store.messages(room.id);
  const last = messages.length ? messages[messages.length - 1].id : '';
  const pending = tl ? tl.pending : [];

  // New messages at the end keep the newest in sight when it was; an
  // older page keeps the reader where they were.
  useLayoutEffect(() => {
    if (prevHeight.current !== null) {
      window.scrollTo(0, window.scrollY + document.documentElement.scrollHeight - prevHeight.current);
      prevHeight.current = null;
    } else if (atBottom.current) {
      window.scrollTo(0, document.documentElement.scrollHeight);
    }
  }, [last, pending.length]);

  useEffect(() => {
    if (tl && tl.loaded && document.visibilityState === 'visible') store.markRead(room.id);
  }, [last, tl && tl.loaded]);

  function older() {
    prevHeight.current = document.documentElement.scrollHeight;
    store.loadHistory(room.id, { older: true });
  }

  const typing = store.typingIn(room.id).map((u) => store.name(u) || t('chat_someone'));
  const byId = new Map(messages.map((m) => [m.id, m]));

  return (
    <section class="room" aria-label={store.roomName(room)}>
      <div class="room-head">
        <p class="room-meta">
          <span>{kindLabel(room)}</span>
          {room.member_count ? <span> · {t('chat_members_n', { n: room.member_count })}</span> : null}
          {room.locked && <span class="tag">{t('chat_locked')}</span>}
          {room.muted && <span class="tag">{t('chat_you_muted')}</span>}
        </p>
        {room.topic && <p class="room-topic">{room.topic}</p>}
        <p class="room-links">
          <Link href="/chat" class="small-link back-to-list">{t('chat_all')}</Link>
          <Link href={`/chat/${encodeURIComponent(room.id)}/info`} class="small-link">{t('chat_info_link')}</Link>
        </p>
        {room.kind === 'ROSTER' && room.group_id && <ChannelOfGroup store={store} room={room} moderator={r.moderator} />}
      </div>
      {tl && tl.error && <Alert>{errorText(tl.error)} <button type="button" onClick={() => store.loadHistory(room.id)}>{t('retry')}</button></Alert>}
      {(!tl || (!tl.loaded && !tl.error)) && <Loading />}
      {tl && tl.more && <p><button type="button" class="secondary" disabled={tl.loading} onClick={older}>{t('chat_older')}</button></p>}
      {tl && tl.loaded && !tl.more && messages.length > 0 && <p class="muted timeline-start">{room.effective_retention_days ? t('chat_start_retention', { n: room.effective_retention_days }) : t('chat_start')}</p>}
      {tl && tl.loaded && messages.length === 0 && pending.length === 0 && <p class="empty">{t('chat_no_messages')}</p>}
      <div role="log" aria-label={t('chat_messages_of', { room: store.roomName(room) })}>
      <ol class="timeline">
        {messages.map((m) => (
          <Message key={m.id} m={m} me={me} room={room} store={store} rights={r} parent={m.reply_to ? byId.get(m.reply_to) : null}
            onReply={() => { setReplyTo(m); composerRef.current && composerRef.current.focus(); }} />
        ))}
        {pending.map((p) => (
          <li key={p.txn} class="msg msg-mine msg-pending">
            <div class="msg-head"><strong>{t('chat_you')}</strong> <span class="muted">{p.failed ? t('chat_not_sent') : t('chat_sending')}</span></div>
            <Markdown text={p.text} />
            {p.failed && (
              <div class="msg-actions">
                <button type="button" onClick={() => store.retry(room.id, p.txn)}>{t('chat_retry_send')}</button>
                <button type="button" class="secondary" onClick={() => store.discard(room.id, p.txn)}>{t('chat_discard')}</button>
              </div>
            )}
          </li>
        ))}
      </ol>
      </div>
      <p class="typing" aria-live="polite">{typing.length ? t(typing.length === 1 ? 'chat_typing_one' : 'chat_typing_many', { name: typing.join(', ') }) : ''}</p>
      {r.post ? (
        <Composer store={store} room={room} me={me} replyTo={replyTo} onReplyDone={() => setReplyTo(null)} inputRef={composerRef} />
      ) : (
        <p class="alert alert-info">{room.muted ? t('chat_cannot_post_muted') : room.kind === 'ANNOUNCEMENT' ? t('chat_cannot_post_announcement') : t('chat_cannot_post_locked')}</p>
      )}
    </section>
  );
}

// A class's (or any group's) announcement channel: its members follow the
// same group. Found among the person's rooms; its leaders may open one.
function ChannelOfGroup({ store, room, moderator }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const channel = [...store.rooms.values()].find((x) => x.kind === 'ANNOUNCEMENT' && x.group_id === room.group_id);
  if (channel) {
    return <p><Link href={`/chat/${encodeURIComponent(channel.id)}`} class="button-link">{t('chat_channel_open', { room: store.roomName(channel) })}</Link></p>;
  }
  if (!moderator) return null;
  async function create() {
    setBusy(true);
    setError(null);
    try {
      const c = await store.createRoom({
        school_id: room.school_id, kind: 'ANNOUNCEMENT', group_id: room.group_id,
        name: t('chat_channel_name', { group: room.name }),
      });
      navigate(`/chat/${encodeURIComponent(c.id)}`);
    } catch (e) {
      if (!(e instanceof AuthError)) setError(chatError(e));
      setBusy(false);
    }
  }
  return (
    <div class="channel-create">
      <p class="muted" id="channel-hint">{t('chat_channel_hint')}</p>
      <button type="button" disabled={busy} aria-describedby="channel-hint" onClick={create}>{t('chat_channel_create', { group: room.name })}</button>
      {error && <Alert>{error}</Alert>}
    </div>
  );
}

function excerpt(text, n = 80) {
  const s = String(text || '').replace(/\s+/g, ' ').trim();
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function Message({ m, me, room, store, rights: r, parent, onReply }) {
  const [panel, setPanel] = useState(null); // react | more | report | remove | receipts
  const [error, setError] = useState(null);
  const [note, setNote] = useState(null);
  const mine = m.sender_id === me;
  const sender = mine ? t('chat_you') : store.name(m.sender_id) || t('chat_someone');
  const mentionsMe = (m.mentions || []).includes(me);
  const headingId = `msg-${m.id}`;

  async function run(fn, done) {
    setError(null);
    try {
      await fn();
      if (done) setNote(done);
      setPanel(null);
    } catch (e) {
      if (!(e instanceof AuthError)) setError(chatError(e));
    }
  }
  const toggle = (key) => run(() => {
    const existing = (m.reactions || []).find((x) => x.key === key);
    return existing && existing.mine ? store.unreact(m.id, key) : store.react(m.id, key);
  });

  if (m.deleted) {
    return (
      <li class="msg msg-deleted" id={headingId}>
        <p class="muted">{m.removed_by_moderator ? t('chat_removed_by_mod') : t('chat_deleted')} · <time dateTime={m.deleted_at || m.created_at}>{shortTime(m.deleted_at || m.created_at)}</time></p>
      </li>
    );
  }
  const isAnnouncement = room.kind === 'ANNOUNCEMENT' && m.read_status;
  return (
    <li class={`msg${mine ? ' msg-mine' : ''}${mentionsMe ? ' msg-mention' : ''}`} id={headingId}>
      <div class="msg-head">
        <strong>{sender}</strong>{' '}
        <time class="muted" dateTime={m.created_at}>{shortTime(m.created_at)}</time>
        {m.edited && <span class="muted"> · {t('chat_edited')}</span>}
        {m.pinned && <span class="tag">{t('chat_pinned')}</span>}
        {mentionsMe && <span class="tag">{t('chat_mentions_you')}</span>}
        {store.reported.has(m.id) && <span class="tag tag-warn">{t('chat_reported_tag')}</span>}
      </div>
      {m.reply_to && (
        <p class="reply-ref">
          <span class="visually-hidden">{t('chat_in_reply')}: </span>
          {parent ? <a href={`#msg-${parent.id}`}>↪ {store.name(parent.sender_id) || (parent.sender_id === me ? t('chat_you') : t('chat_someone'))}: {parent.deleted ? t('chat_deleted') : excerpt(parent.text)}</a> : <span>↪ {t('chat_reply_older')}</span>}
        </p>
      )}
      {m.poll ? <Poll m={m} me={me} room={room} store={store} rights={r} /> : <Markdown text={m.text} />}
      {(m.attachments || []).length > 0 && (
        <ul class="attachments">{m.attachments.map((a) => <li key={a.file_id}>📎 {a.name}</li>)}</ul>
      )}
      {isAnnouncement && <ReadState m={m} me={me} room={room} store={store} mine={mine} moderator={r.moderator} onError={setError} />}
      {(m.reactions || []).length > 0 && (
        <ul class="reactions plain" aria-label={t('chat_reactions')}>
          {m.reactions.map((x) => (
            <li key={x.key}>
              <button type="button" class="reaction" aria-pressed={x.mine ? 'true' : 'false'} disabled={!r.react}
                aria-label={t('chat_reaction_label', { key: x.key, n: x.count })} onClick={() => toggle(x.key)}>
                <span aria-hidden="true">{x.key} {x.count}</span>
              </button>
            </li>
          ))}
        </ul>
      )}
      <div class="msg-actions">
        {r.post && <button type="button" class="small" onClick={onReply}>{t('chat_reply')}</button>}
        {r.react && (
          <button type="button" class="small" aria-expanded={panel === 'react' ? 'true' : 'false'} onClick={() => setPanel(panel === 'react' ? null : 'react')}>
            {t('chat_react')}
          </button>
        )}
        <button type="button" class="small secondary" aria-expanded={panel === 'more' ? 'true' : 'false'}
          aria-label={t('chat_more_actions', { name: sender })} onClick={() => setPanel(panel === 'more' ? null : 'more')}>⋯</button>
      </div>
      {panel === 'react' && (
        <div class="react-picker" role="group" aria-label={t('chat_react')}>
          {REACTIONS.map((k) => (
            <button key={k} type="button" class="small" aria-label={t('chat_react_with', { key: k })} onClick={() => toggle(k)}>{k}</button>
          ))}
        </div>
      )}
      {panel === 'more' && (
        <div class="msg-menu" role="group" aria-label={t('chat_more_actions', { name: sender })}>
          {!mine && <button type="button" class="small" onClick={() => setPanel('report')}>{t('chat_report')}</button>}
          {mine && <button type="button" class="small" onClick={() => run(() => store.deleteMessage(m.id))}>{t('chat_delete')}</button>}
          {r.moderator && !mine && <button type="button" class="small" onClick={() => setPanel('remove')}>{t('chat_remove')}</button>}
          <button type="button" class="small secondary" onClick={() => setPanel(null)}>{t('close')}</button>
        </div>
      )}
      {panel === 'report' && (
        <ReasonForm id={`report-${m.id}`} label={t('chat_report_reason')} hint={t('chat_report_hint')} required submit={t('chat_report_send')}
          onCancel={() => setPanel(null)} onSubmit={(reason) => run(() => store.report(m.id, reason), t('chat_reported'))} />
      )}
      {panel === 'remove' && (
        <ReasonForm id={`remove-${m.id}`} label={t('chat_remove_reason')} hint={t('chat_remove_hint')} submit={t('chat_remove_confirm')}
          onCancel={() => setPanel(null)} onSubmit={(reason) => run(() => store.removeMessage(m.id, reason))} />
      )}
      {note && <p class="alert alert-success" role="status">{note}</p>}
      {error && <Alert>{error}</Alert>}
    </li>
  );
}

function ReasonForm({ id, label, hint, required, submit, onSubmit, onCancel }) {
  const [reason, setReason] = useState('');
  const [missing, setMissing] = useState(false);
  const ref = useRef(null);
  useEffect(() => { ref.current && ref.current.focus(); }, []);
  return (
    <form class="reason-form" onSubmit={(e) => {
      e.preventDefault();
      const v = reason.trim();
      if (required && !v) { setMissing(true); return; }
      onSubmit(v);
    }}>
      <div class="field">
        <label for={id}>{label}</label>
        <p class="hint" id={`${id}-hint`}>{hint}</p>
        <input id={id} ref={ref} value={reason} maxLength={500} aria-describedby={`${id}-hint${missing ? ` ${id}-error` : ''}`}
          aria-invalid={missing ? 'true' : undefined} onInput={(e) => { setReason(e.currentTarget.value); setMissing(false); }} />
        {missing && <p class="field-error" id={`${id}-error`}>{t('err_required')}</p>}
      </div>
      <div class="actions">
        <button type="submit" class="primary">{submit}</button>
        <button type="button" class="secondary" onClick={onCancel}>{t('chat_cancel')}</button>
      </div>
    </form>
  );
}

// Announcements: members confirm reading; the author and the moderators
// see how many of the audience read and confirmed, and who.
function ReadState({ m, room, store, mine, moderator, onError }) {
  const st = m.read_status;
  const [who, setWho] = useState(null);
  const [busy, setBusy] = useState(false);
  if (mine || moderator) {
    async function details() {
      if (who) { setWho(null); return; }
      try {
        setWho(await store.readStatus(m.id));
      } catch (e) {
        if (!(e instanceof AuthError)) onError(chatError(e));
      }
    }
    const names = (ids) => (ids || []).map((u) => store.name(u) || t('chat_someone')).join(', ') || '—';
    return (
      <div class="read-state">
        <p class="read-count">{t('chat_read_by', { n: st.read || 0, m: st.audience || 0, c: st.confirmed || 0 })}</p>
        <button type="button" class="small secondary" aria-expanded={who ? 'true' : 'false'} onClick={details}>{t('chat_read_who')}</button>
        {who && (
          <dl class="read-who">
            <dt>{t('chat_read_confirmed')}</dt><dd>{names(who.confirmed_ids)}</dd>
            <dt>{t('chat_read_read')}</dt><dd>{names(who.read_ids)}</dd>
            <dt>{t('chat_read_unread')}</dt><dd>{names(who.unread_ids)}</dd>
          </dl>
        )}
      </div>
    );
  }
  if (st.confirmed_by_me) return <p class="read-state confirmed">✓ {t('chat_confirmed')}</p>;
  return (
    <div class="read-state">
      <button type="button" class="primary" disabled={busy} onClick={async () => {
        setBusy(true);
        try { await store.confirm(room.id, m); } catch (e) { if (!(e instanceof AuthError)) onError(chatError(e)); }
        setBusy(false);
      }}>{t('chat_confirm')}</button>
    </div>
  );
}

function Poll({ m, me, room, store, rights: r }) {
  const p = m.poll;
  const closed = p.closed || (p.closes_at && new Date(p.closes_at) < new Date());
  const mineChoice = (p.options || []).filter((o) => o.mine).map((o) => o.index);
  const [choice, setChoice] = useState(mineChoice);
  const [error, setError] = useState(null);
  const voted = mineChoice.length > 0;
  const canVote = !closed && r.react;
  const id = `poll-${m.id}`;
  const total = p.voters || 0;

  async function call(fn) {
    setError(null);
    try { await fn(); } catch (e) { if (!(e instanceof AuthError)) setError(chatError(e)); }
  }
  return (
    <div class="poll">
      <div class="poll-question" id={`${id}-q`}><Markdown text={m.text} /></div>
      <p class="muted poll-kind">
        {p.multiple_choice ? t('chat_poll_multiple') : t('chat_poll_single')} · {p.anonymous ? t('chat_poll_anonymous') : t('chat_poll_named')}
        {p.closes_at && !closed ? ` · ${t('chat_poll_closes', { when: formatDate(p.closes_at) })}` : ''}
        {closed ? ` · ${t('chat_poll_closed')}` : ''}
      </p>
      <form onSubmit={(e) => { e.preventDefault(); call(() => store.vote(room.id, m.id, choice)); }}>
        <fieldset aria-labelledby={`${id}-q`} disabled={!canVote}>
          <legend class="visually-hidden">{t('chat_poll_options')}</legend>
          <ul class="plain poll-options">
            {(p.options || []).map((o) => {
              const oid = `${id}-${o.index}`;
              const checked = choice.includes(o.index);
              return (
                <li key={o.index} class="poll-option">
                  <input id={oid} type={p.multiple_choice ? 'checkbox' : 'radio'} name={id} checked={checked}
                    onChange={() => setChoice(p.multiple_choice ? (checked ? choice.filter((x) => x !== o.index) : [...choice, o.index]) : [o.index])} />
                  <label for={oid}>{o.text}{o.mine ? ` (${t('chat_poll_your_vote')})` : ''}</label>
                  <progress max={Math.max(total, 1)} value={o.votes || 0} aria-hidden="true" />
                  <span class="poll-votes">{t('chat_poll_votes', { n: o.votes || 0 })}</span>
                  {!p.anonymous && (o.voter_ids || []).length > 0 && (
                    <span class="muted poll-voters">{o.voter_ids.map((u) => (u === me ? t('chat_you') : store.name(u) || t('chat_someone'))).join(', ')}</span>
                  )}
                </li>
              );
            })}
          </ul>
        </fieldset>
        <p class="muted">{t('chat_poll_voters', { n: total })}</p>
        <div class="actions">
          {canVote && <button type="submit" class="primary" disabled={choice.length === 0}>{voted ? t('chat_poll_change') : t('chat_poll_vote')}</button>}
          {canVote && voted && <button type="button" class="secondary" onClick={() => { setChoice([]); call(() => store.vote(room.id, m.id, [])); }}>{t('chat_poll_unvote')}</button>}
          {!closed && (m.sender_id === me || r.moderator) && <button type="button" class="secondary" onClick={() => call(() => store.closePoll(room.id, m.id))}>{t('chat_poll_close')}</button>}
        </div>
      </form>
      {error && <Alert>{error}</Alert>}
    </div>
  );
}

// The composer: Enter sends, Shift+Enter starts a new line; "@" offers
// the room's members to mention; a reply names the message it answers.
function Composer({ store, room, me, replyTo, onReplyDone, inputRef }) {
  const [text, setText] = useState('');
  const [mentioned, setMentioned] = useState([]); // [{ id, name }]
  const [query, setQuery] = useState(null);
  const [error, setError] = useState(null);
  const [pollOpen, setPollOpen] = useState(false);
  const details = store.details.get(room.id);
  const members = details ? (details.members || []).filter((x) => x.user_id !== me && x.display_name) : [];
  const suggestions = query === null ? [] : members.filter((x) => x.display_name.toLowerCase().split(/\s+/).some((w) => w.startsWith(query.toLowerCase())) || x.display_name.toLowerCase().startsWith(query.toLowerCase())).slice(0, 6);

  function onInput(e) {
    const v = e.currentTarget.value;
    setText(v);
    setError(null);
    const upTo = v.slice(0, e.currentTarget.selectionStart);
    const at = upTo.match(/(^|\s)@([\p{L}\p{N}._-]{0,30})$/u);
    setQuery(at ? at[2] : null);
    if (v.trim()) store.typingNow(room.id);
  }

  function mention(x) {
    const el = inputRef.current;
    const caret = el ? el.selectionStart : text.length;
    const before = text.slice(0, caret).replace(/@([\p{L}\p{N}._-]{0,30})$/u, `@${x.display_name} `);
    const next = before + text.slice(caret);
    setText(next);
    setMentioned((list) => (list.some((y) => y.id === x.user_id) ? list : [...list, { id: x.user_id, name: x.display_name }]));
    setQuery(null);
    if (el) { el.focus(); requestAnimationFrame(() => el.setSelectionRange(before.length, before.length)); }
  }

  async function send() {
    const v = text.trim();
    if (!v) return;
    const mentions = mentioned.filter((x) => v.includes(`@${x.name}`)).map((x) => x.id);
    setText('');
    setMentioned([]);
    setQuery(null);
    const reply = replyTo ? replyTo.id : '';
    onReplyDone();
    const err = await store.send(room.id, { text: v, reply_to: reply, mentions }).catch((e) => e);
    if (err && !(err instanceof AuthError) && err.status >= 400 && err.status < 500) {
      // Refused: the text comes back to be changed.
      setText(v);
      setError(chatError(err));
    }
  }

  return (
    <div class="composer-wrap">
      {pollOpen && <PollForm store={store} room={room} onDone={() => setPollOpen(false)} />}
      <form class="composer" onSubmit={(e) => { e.preventDefault(); send(); }}>
        {replyTo && (
          <p class="replying">
            {t('chat_replying_to', { name: store.name(replyTo.sender_id) || (replyTo.sender_id === me ? t('chat_you') : t('chat_someone')) })}: <span class="muted">{excerpt(replyTo.text, 60)}</span>{' '}
            <button type="button" class="small secondary" onClick={onReplyDone}>{t('chat_reply_cancel')}</button>
          </p>
        )}
        <label for="composer-text">{t('chat_message_label', { room: store.roomName(room) })}</label>
        <textarea id="composer-text" ref={inputRef} rows={2} value={text} maxLength={8000}
          aria-describedby={`composer-hint${error ? ' composer-error' : ''}`} aria-invalid={error ? 'true' : undefined}
          onInput={onInput}
          onKeyDown={(e) => {
            if (e.key === 'Escape' && query !== null) { setQuery(null); return; }
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); if (suggestions.length) mention(suggestions[0]); else send(); }
          }} />
        <p class="hint" id="composer-hint">{t('chat_composer_hint')}</p>
        {error && <p class="field-error" id="composer-error" role="alert">{error}</p>}
        {suggestions.length > 0 && (
          <ul class="mentions plain" aria-label={t('chat_mention_list')}>
            {suggestions.map((x) => (
              <li key={x.user_id}><button type="button" class="small" onClick={() => mention(x)}>{t('chat_mention', { name: x.display_name })}</button></li>
            ))}
          </ul>
        )}
        <div class="composer-actions">
          <button type="button" class="secondary" aria-expanded={pollOpen ? 'true' : 'false'} onClick={() => setPollOpen(!pollOpen)}>{t('chat_poll_new')}</button>
          <button type="submit" class="primary">{t('chat_send')}</button>
        </div>
      </form>
    </div>
  );
}

function PollForm({ store, room, onDone }) {
  const [question, setQuestion] = useState('');
  const [options, setOptions] = useState(['', '']);
  const [multiple, setMultiple] = useState(false);
  const [anonymous, setAnonymous] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const first = useRef(null);
  useEffect(() => { first.current && first.current.focus(); }, []);

  async function submit(e) {
    e.preventDefault();
    const opts = options.map((o) => o.trim()).filter(Boolean);
    if (!question.trim() || opts.length < 2) { setError(t('chat_poll_incomplete')); return; }
    setBusy(true);
    setError(null);
    try {
      await store.createPoll(room.id, { question: question.trim(), options: opts, multiple_choice: multiple, anonymous });
      onDone();
    } catch (err) {
      if (!(err instanceof AuthError)) setError(chatError(err));
    }
    setBusy(false);
  }
  return (
    <form class="poll-form card" onSubmit={submit} aria-labelledby="poll-form-title">
      <h2 id="poll-form-title">{t('chat_poll_new')}</h2>
      <div class="field">
        <label for="poll-question">{t('chat_poll_question')}</label>
        <input id="poll-question" ref={first} value={question} maxLength={500} onInput={(e) => setQuestion(e.currentTarget.value)} />
      </div>
      {options.map((o, i) => (
        <div class="field poll-option-field" key={i}>
          <label for={`poll-option-${i}`}>{t('chat_poll_option_n', { n: i + 1 })}</label>
          <input id={`poll-option-${i}`} value={o} maxLength={200} onInput={(e) => { const v = e.currentTarget.value; setOptions(options.map((x, j) => (j === i ? v : x))); }} />
          {options.length > 2 && <button type="button" class="small secondary" onClick={() => setOptions(options.filter((_, j) => j !== i))}>{t('chat_poll_option_remove', { n: i + 1 })}</button>}
        </div>
      ))}
      {options.length < 20 && <p><button type="button" class="small secondary" onClick={() => setOptions([...options, ''])}>{t('chat_poll_option_add')}</button></p>}
      <p class="check"><input id="poll-multiple" type="checkbox" checked={multiple} onChange={(e) => setMultiple(e.currentTarget.checked)} /> <label for="poll-multiple">{t('chat_poll_multiple')}</label></p>
      <p class="check"><input id="poll-anonymous" type="checkbox" checked={anonymous} onChange={(e) => setAnonymous(e.currentTarget.checked)} /> <label for="poll-anonymous">{t('chat_poll_anonymous')}</label></p>
      {error && <Alert>{error}</Alert>}
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>{t('chat_poll_start')}</button>
        <button type="button" class="secondary" onClick={onDone}>{t('chat_cancel')}</button>
      </div>
    </form>
  );
}
