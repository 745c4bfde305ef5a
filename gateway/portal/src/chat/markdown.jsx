// The messages' markdown subset (docs/messaging.md): paragraphs, line
// breaks, emphasis, strong, strikethrough, code spans and fenced blocks,
// links to http, https and mailto, lists and quotes. Rendered to elements,
// never to HTML: every text goes through Preact as text, so nothing a
// message says can become markup, and a link target is used only when it
// starts with an allowed scheme.

const SAFE_URL = /^(https?:\/\/|mailto:)[^\s<>"]+$/i;
const BARE_URL = /\bhttps?:\/\/[^\s<>"]+[^\s<>".,;:!?)\]]/gi;

function link(href, children, key) {
  return SAFE_URL.test(href)
    ? <a key={key} href={href} rel="noopener noreferrer nofollow" target="_blank">{children}</a>
    : children;
}

// Bare URLs in plain text become links.
function autolink(text, keyBase) {
  const out = [];
  let last = 0;
  let i = 0;
  for (const m of text.matchAll(BARE_URL)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    out.push(link(m[0], m[0], `${keyBase}u${i++}`));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

// Inline: `code`, **strong**, *em* / _em_, ~~strike~~, [text](url).
const INLINE = /`([^`\n]+)`|\*\*(.+?)\*\*|__(.+?)__|~~(.+?)~~|\*([^*\s](?:[^*]*[^*\s])?)\*|\b_([^_\s](?:[^_]*[^_\s])?)_\b|\[([^\]\n]+)\]\(([^)\s]+)\)/g;

export function inline(text, keyBase = 'i') {
  const out = [];
  let last = 0;
  let i = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(...autolink(text.slice(last, m.index), `${keyBase}${i}`));
    const key = `${keyBase}-${i++}`;
    if (m[1] !== undefined) out.push(<code key={key}>{m[1]}</code>);
    else if (m[2] !== undefined || m[3] !== undefined) out.push(<strong key={key}>{inline(m[2] ?? m[3], key)}</strong>);
    else if (m[4] !== undefined) out.push(<del key={key}>{inline(m[4], key)}</del>);
    else if (m[5] !== undefined || m[6] !== undefined) out.push(<em key={key}>{inline(m[5] ?? m[6], key)}</em>);
    else out.push(link(m[8], inline(m[7], key), key));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(...autolink(text.slice(last), `${keyBase}${i}`));
  return out;
}

function lines(text, key) {
  const parts = text.split('\n');
  const out = [];
  parts.forEach((l, n) => {
    if (n) out.push(<br key={`${key}b${n}`} />);
    out.push(...inline(l, `${key}l${n}`));
  });
  return out;
}

// Block structure: fenced code, quotes, lists, paragraphs.
export function Markdown({ text }) {
  const src = String(text || '').replace(/\r\n?/g, '\n').split('\n');
  const blocks = [];
  let i = 0;
  let k = 0;
  while (i < src.length) {
    const line = src[i];
    if (/^\s*$/.test(line)) { i++; continue; }
    const fence = line.match(/^\s*(```|~~~)/);
    if (fence) {
      const body = [];
      i++;
      while (i < src.length && !src[i].trim().startsWith(fence[1])) body.push(src[i++]);
      i++;
      blocks.push(<pre key={k++}><code>{body.join('\n')}</code></pre>);
      continue;
    }
    if (/^\s*>/.test(line)) {
      const body = [];
      while (i < src.length && /^\s*>/.test(src[i])) body.push(src[i++].replace(/^\s*>\s?/, ''));
      blocks.push(<blockquote key={k++}><Markdown text={body.join('\n')} /></blockquote>);
      continue;
    }
    const bullet = /^\s*[-*+]\s+/;
    const number = /^\s*\d{1,9}[.)]\s+/;
    if (bullet.test(line) || number.test(line)) {
      const re = bullet.test(line) ? bullet : number;
      const items = [];
      while (i < src.length && re.test(src[i])) items.push(src[i++].replace(re, ''));
      const lis = items.map((it, n) => <li key={n}>{inline(it, `${k}-${n}`)}</li>);
      blocks.push(re === bullet ? <ul key={k++}>{lis}</ul> : <ol key={k++}>{lis}</ol>);
      continue;
    }
    const para = [];
    while (i < src.length && !/^\s*$/.test(src[i]) && !/^\s*(```|~~~|>)/.test(src[i]) && !bullet.test(src[i]) && !number.test(src[i])) para.push(src[i++]);
    const key = k++;
    blocks.push(<p key={key}>{lines(para.join('\n'), `p${key}`)}</p>);
  }
  return <div class="md">{blocks}</div>;
}
