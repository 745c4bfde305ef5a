// A value that components can follow: the language, the active account,
// the route. Smaller than a state library and enough for this app.
import { useEffect, useState } from 'preact/hooks';

export function signal(value) {
  const subs = new Set();
  return {
    get: () => value,
    set(next) {
      if (next === value) return;
      value = next;
      for (const f of [...subs]) f(value);
    },
    subscribe(f) {
      subs.add(f);
      return () => subs.delete(f);
    },
  };
}

// Re-renders the calling component whenever `sig` changes.
export function useSignal(sig) {
  const [, bump] = useState(0);
  useEffect(() => sig.subscribe(() => bump((n) => n + 1)), [sig]);
  return sig.get();
}
