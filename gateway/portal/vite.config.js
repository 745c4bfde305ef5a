// Vite builds the portal into $(BUILD)/portal (the Makefile passes
// --outDir). JSX is compiled by Vite's own esbuild for Preact; the plugin
// below adds what the app shell needs beside the bundle: the icons (drawn in
// tools/icons.js) and the service worker with the list of files to cache.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { pngIcon, svgIcon } from './tools/icons.js';

function appShell() {
  return {
    name: 'kreide-app-shell',
    generateBundle(_options, bundle) {
      const icons = {
        'icons/icon.svg': svgIcon(),
        'icons/icon-192.png': pngIcon(192),
        'icons/icon-512.png': pngIcon(512),
        'icons/maskable-512.png': pngIcon(512, { maskable: true }),
        'icons/apple-touch-icon.png': pngIcon(180, { maskable: true }),
      };
      for (const [fileName, source] of Object.entries(icons)) this.emitFile({ type: 'asset', fileName, source });
      // The shell: the page, its code and styles, the manifest and icons.
      // Never an API answer: those belong to one account.
      const files = ['/', '/manifest.webmanifest', ...Object.keys(icons).map((f) => `/${f}`),
        ...Object.keys(bundle).filter((f) => /\.(js|css)$/.test(f)).map((f) => `/${f}`)].sort();
      const version = createHash('sha256').update(files.join('\n')).digest('hex').slice(0, 12);
      const template = readFileSync(new URL('./src/sw.js', import.meta.url), 'utf8');
      const source = template
        .replace('__SHELL_VERSION__', version)
        .replace('[/* __SHELL_FILES__ */]', JSON.stringify(files));
      this.emitFile({ type: 'asset', fileName: 'sw.js', source });
    },
  };
}

export default {
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  plugins: [appShell()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2020',
    // Small images stay files: the policy allows data: images, but files
    // are cached by the service worker like the rest.
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
};
