// The realtime socket (docs/realtime.md): GET /api/v1/ws?after=<position>
// with the access token in the subprotocol list, since a browser's
// WebSocket cannot set headers and the token must never be in a URL.
//
// It reconnects after any loss with its newest position as `after`, so the
// gateway replays what was missed; a credential that expired (close code
// 4001) is renewed first. While it cannot connect, the stream is read over
// HTTP at each attempt (`catchUp`), so nothing is missed either way.
import { accessToken, activeAccount, expire } from '../auth.js';

const BACKOFF_MS = [500, 1000, 2000, 5000, 10000, 20000, 30000];

export function connectSocket({ after, onFrame, onStatus, catchUp }) {
  let ws = null;
  let closed = false;
  let attempt = 0;
  let timer = null;
  let opened = false;

  function returnTo() {
    return location.pathname + location.search;
  }

  async function connect() {
    if (closed) return;
    timer = null;
    onStatus('connecting');
    let token;
    try {
      token = await accessToken(returnTo());
    } catch {
      return; // on the way to the provider, or signed out
    }
    if (closed) return;
    const a = after();
    const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/api/v1/ws${a ? `?after=${a}` : ''}`;
    opened = false;
    try {
      ws = new WebSocket(url, ['kreide.v1', `kreide.bearer.${token}`]);
    } catch {
      retry();
      return;
    }
    ws.onopen = () => {
      opened = true;
      attempt = 0;
    };
    ws.onmessage = (m) => {
      if (typeof m.data !== 'string') return;
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      if (f && typeof f === 'object') onFrame(f);
    };
    ws.onclose = (ev) => {
      ws = null;
      if (closed) return;
      if (ev.code === 4001) {
        // The token expired or was revoked: a fresh one, then again.
        const account = activeAccount();
        if (account) expire(account.sub);
        timer = setTimeout(connect, 0);
        return;
      }
      retry(opened);
    };
  }

  function retry(wasOpen = false) {
    if (closed) return;
    onStatus('offline');
    const delay = wasOpen ? BACKOFF_MS[0] : BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt++;
    // Meanwhile the stream comes over HTTP.
    Promise.resolve().then(catchUp).catch(() => {});
    timer = setTimeout(connect, delay * (0.8 + Math.random() * 0.4));
  }

  // Back at once when the device is online or the tab is seen again.
  function wake() {
    if (closed || ws || !timer) return;
    clearTimeout(timer);
    attempt = 0;
    connect();
  }
  const onVisible = () => { if (document.visibilityState === 'visible') wake(); };
  addEventListener('online', wake);
  document.addEventListener('visibilitychange', onVisible);

  connect();

  return {
    send(frame) {
      if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
    },
    close() {
      closed = true;
      clearTimeout(timer);
      removeEventListener('online', wake);
      document.removeEventListener('visibilitychange', onVisible);
      if (ws) ws.close(1000);
      ws = null;
    },
  };
}
