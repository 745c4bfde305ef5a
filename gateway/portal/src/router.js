// Routes are real paths (the gateway answers them with index.html), moved
// between with the History API.
import { signal } from './signal.js';

export const route = signal(location.pathname + location.search);

export function navigate(to, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  route.set(location.pathname + location.search);
  window.scrollTo(0, 0);
}

addEventListener('popstate', () => route.set(location.pathname + location.search));

// Matches "/class/:school/:group" against a path; params or null.
export function match(pattern, path) {
  const p = pattern.split('/');
  const s = path.split('?')[0].replace(/\/+$/, '').split('/');
  if (pattern === '/') return path.split('?')[0] === '/' ? {} : null;
  if (p.length !== s.length) return null;
  const params = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) {
      if (!s[i]) return null;
      try { params[p[i].slice(1)] = decodeURIComponent(s[i]); } catch { return null; }
    } else if (p[i] !== s[i]) return null;
  }
  return params;
}

// Plain links that stay in the app.
export function onLink(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.currentTarget;
  if (a.origin !== location.origin) return;
  event.preventDefault();
  navigate(a.pathname + a.search);
}
