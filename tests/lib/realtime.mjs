// A realtime client for the suites: the npm `ws` WebSocket client on
// /api/v1/ws (docs/realtime.md), keeping every frame it got so a test can
// wait for and inspect them.
import WebSocket from 'ws';

export class Socket {
  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.waiters = [];
    this.closed = null; // {code, reason} once closed
    this.refs = 0;
    ws.on('message', (data, binary) => {
      const frame = binary ? { type: 'binary', data } : JSON.parse(data.toString());
      this.frames.push(frame);
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  // Every event frame's event, in arrival order.
  events() {
    return this.frames.filter((f) => f.type === 'event').map((f) => f.event);
  }

  // The position of the newest event or ready frame: what `after` is on a reconnect.
  position() {
    let p = '0';
    for (const f of this.frames) {
      if (f.type === 'event') p = f.event.position;
      else if (f.type === 'ready' && BigInt(f.position) > BigInt(p)) p = f.position;
    }
    return p;
  }

  // Resolves with what `pred` returns once it returns something truthy.
  waitFor(pred, { timeoutMs = 10000, what = 'a frame' } = {}) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = pred(this);
        if (v) {
          done();
          resolve(v);
        } else if (this.closed && !pred.allowClosed) {
          done();
          reject(new Error(`socket closed (${this.closed.code} ${this.closed.reason}) while waiting for ${what}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.frames.slice(-5))}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
      };
      this.waiters.push(check);
      check();
    });
  }

  ready(opts) {
    return this.waitFor((s) => s.frames.find((f) => f.type === 'ready'), { what: 'ready', ...opts });
  }

  waitClosed(timeoutMs = 10000) {
    const pred = (s) => s.closed;
    pred.allowClosed = true;
    return this.waitFor(pred, { timeoutMs, what: 'the close' });
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  // Sends a frame with a fresh ref and resolves with its reply (or pong).
  call(frame) {
    const ref = `r${++this.refs}`;
    this.send({ ...frame, ref });
    return this.waitFor((s) => s.frames.find((f) => (f.type === 'reply' || f.type === 'pong') && f.ref === ref),
      { what: `the reply to ${frame.type}` });
  }

  close() {
    this.ws.close();
    return this.waitClosed();
  }
}

// Opens a socket to a gateway (`http://host:port`). Resolves with a Socket
// once open, or rejects with {status, body} when the upgrade is refused.
export function connect(gatewayUrl, { token, after, protocols, headers = {}, origin } = {}) {
  const url = new URL('/api/v1/ws', gatewayUrl.replace(/^http/, 'ws'));
  if (after !== undefined) url.searchParams.set('after', after);
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  const ws = new WebSocket(url, protocols, { headers: h, origin });
  const sock = new Socket(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(sock));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(body); } catch { /* not JSON */ }
        reject(Object.assign(new Error(`upgrade refused: ${res.statusCode} ${body}`), { status: res.statusCode, json, headers: res.headers }));
      });
    });
    ws.once('error', (e) => reject(e));
  });
}
