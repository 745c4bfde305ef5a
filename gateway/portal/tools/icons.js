// The portal's app icons, drawn here rather than kept as binaries: a chalk
// "K" on a blackboard green. `svgIcon()` is the scalable favicon, `pngIcon()`
// the raster sizes a web app manifest needs (PNG, RFC 2083), rasterised with
// 4×4 supersampling and encoded with Node's zlib alone.
import { deflateSync } from 'node:zlib';

const BOARD = [0x1f, 0x4d, 0x3a]; // #1f4d3a
const CHALK = [0xff, 0xff, 0xff];

// The letter in a unit square, as convex polygons (clockwise or not).
const LETTER = [
  [[0.30, 0.22], [0.43, 0.22], [0.43, 0.78], [0.30, 0.78]], // stem
  [[0.41, 0.50], [0.62, 0.22], [0.77, 0.22], [0.50, 0.57]], // upper arm
  [[0.47, 0.47], [0.77, 0.78], [0.62, 0.78], [0.41, 0.56]], // lower arm
];

function inConvex(poly, x, y) {
  let sign = 0;
  for (let i = 0; i < poly.length; i++) {
    const [ax, ay] = poly[i];
    const [bx, by] = poly[(i + 1) % poly.length];
    const cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax);
    if (cross !== 0) {
      const s = cross > 0 ? 1 : -1;
      if (sign === 0) sign = s;
      else if (s !== sign) return false;
    }
  }
  return true;
}

function inRoundedSquare(x, y, r) {
  const cx = Math.min(Math.max(x, r), 1 - r);
  const cy = Math.min(Math.max(y, r), 1 - r);
  return (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
}

// Maskable icons fill the square and keep the letter inside the central
// safe zone (a circle of 40 % radius, W3C "Web App Manifest" purpose maskable).
function shade(x, y, maskable) {
  if (!maskable && !inRoundedSquare(x, y, 0.18)) return null;
  const s = maskable ? 0.62 : 1;
  const lx = (x - 0.5) / s + 0.5;
  const ly = (y - 0.5) / s + 0.5;
  return LETTER.some((p) => inConvex(p, lx, ly)) ? CHALK : BOARD;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

export function pngIcon(size, { maskable = false } = {}) {
  const n = 4; // samples per axis
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let py = 0; py < size; py++) {
    const row = py * (size * 4 + 1);
    raw[row] = 0; // filter: none
    for (let px = 0; px < size; px++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let sy = 0; sy < n; sy++) {
        for (let sx = 0; sx < n; sx++) {
          const c = shade((px + (sx + 0.5) / n) / size, (py + (sy + 0.5) / n) / size, maskable);
          if (!c) continue;
          r += c[0]; g += c[1]; b += c[2]; a += 255;
        }
      }
      const o = row + 1 + px * 4;
      const cover = a / 255; // samples inside
      raw[o] = cover ? Math.round(r / cover) : 0;
      raw[o + 1] = cover ? Math.round(g / cover) : 0;
      raw[o + 2] = cover ? Math.round(b / cover) : 0;
      raw[o + 3] = Math.round(a / (n * n));
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export function svgIcon() {
  const hex = (c) => '#' + c.map((v) => v.toString(16).padStart(2, '0')).join('');
  const pts = (p) => p.map(([x, y]) => `${x * 100},${y * 100}`).join(' ');
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">` +
    `<rect width="100" height="100" rx="18" fill="${hex(BOARD)}"/>` +
    LETTER.map((p) => `<polygon points="${pts(p)}" fill="${hex(CHALK)}"/>`).join('') +
    `</svg>\n`;
}
