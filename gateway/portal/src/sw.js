// The portal's service worker: keeps the app shell (the page, its code,
// styles, manifest and icons) so the portal opens quickly and installs as an
// app. It never stores an answer of the API or of the sign-in endpoints:
// those belong to one account, and a shared tablet has several.
// The build (vite.config.js) fills in the version and the file list.
const CACHE = 'kreide-shell-__SHELL_VERSION__';
const SHELL = [/* __SHELL_FILES__ */];

// Paths that always go to the network, untouched.
const NEVER = ['/api/', '/oidc/', '/.well-known/', '/portal-config.json', '/healthz', '/readyz', '/metrics'];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('kreide-shell-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (NEVER.some((p) => url.pathname === p || url.pathname.startsWith(p))) return;

  if (req.mode === 'navigate') {
    // The page from the network when it can be had (a new release shows at
    // once), else the cached shell; the app reads its route from the URL.
    event.respondWith(fetch(req).catch(() => caches.match('/', { cacheName: CACHE })));
    return;
  }
  if (SHELL.includes(url.pathname)) {
    event.respondWith(caches.match(req, { cacheName: CACHE }).then((hit) => hit || fetch(req)));
  }
});
