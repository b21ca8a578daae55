// The only way the page puts data on screen: DOM nodes with text, never HTML strings.
// Bidi and invisible control characters are shown as visible markers, long strings are
// cut with an expand button, and links are built only from known explorer bases.

// Bidi embeddings/overrides/isolates and marks, zero-width and other invisible format
// characters, C0/C1 controls (except tab and newline), and the replacement of line breaks.
const HIDDEN = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u00AD\u061C\u115F\u1160\u180E\u200B-\u200F\u2028-\u202E\u2060-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFF9-\uFFFB]/gu;

export const DEFAULT_LIMIT = 160;

/** Create an element; `props` sets only the properties named, children are nodes or text. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('aria-') || key === 'role' || key === 'for' || key === 'data-check') node.setAttribute(key, String(value));
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (['id', 'type', 'name', 'value', 'disabled', 'hidden', 'placeholder', 'title', 'max', 'autocomplete', 'spellcheck', 'readOnly', 'rows', 'open'].includes(key)) node[key] = value;
    else throw new Error(`el(): property ${key} is not allowed`);
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** `text` as nodes: hidden characters become visible ⟨U+XXXX⟩ markers. */
export function visible(text) {
  const fragment = document.createDocumentFragment();
  const value = String(text);
  let last = 0;
  for (const match of value.matchAll(HIDDEN)) {
    if (match.index > last) fragment.append(document.createTextNode(value.slice(last, match.index)));
    const code = match[0].codePointAt(0).toString(16).toUpperCase().padStart(4, '0');
    fragment.append(el('span', { class: 'marker', title: 'invisible or direction-changing character' }, `U+${code}`));
    last = match.index + match[0].length;
  }
  if (last < value.length) fragment.append(document.createTextNode(value.slice(last)));
  return fragment;
}

/** `text` with each hidden character written as ⟨U+XXXX⟩ (for text-only places). */
export function marked(text) {
  return String(text).replace(HIDDEN, (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`);
}

/** A plain one-line form of `text` (for SVG labels): markers inline, cut to `limit`. */
export function plain(text, limit = 28) {
  const chars = [...marked(text)];
  return chars.length > limit ? chars.slice(0, limit - 1).join('') + '…' : chars.join('');
}

/**
 * Untrusted text, isolated from its surroundings' direction, cut after `limit` code
 * points with a button that shows all of it in a read-only text box (which stays fast
 * for 100 kB, where a laid-out span would not).
 */
export function untrusted(text, { limit = DEFAULT_LIMIT, className = '' } = {}) {
  const value = String(text);
  const chars = [...value];
  const box = el('span', { class: `untrusted ${className}`.trim() });
  if (chars.length <= limit) return append(box, [visible(value)]);
  const head = el('span', {}, visible(chars.slice(0, limit).join('')));
  const rest = chars.length - limit;
  const more = `… show all ${chars.length.toLocaleString('en')} characters`;
  const button = el('button', { type: 'button', class: 'expand', 'aria-expanded': 'false' }, more);
  button.addEventListener('click', () => {
    const open = button.getAttribute('aria-expanded') === 'true';
    if (open) {
      head.replaceChildren(visible(chars.slice(0, limit).join('')));
    } else {
      const full = el('textarea', { class: 'full', readOnly: true, rows: 8, spellcheck: false, 'aria-label': `all ${rest + limit} characters` });
      full.value = marked(value);
      head.replaceChildren(full);
    }
    box.classList.toggle('expanded', !open);
    button.setAttribute('aria-expanded', String(!open));
    button.textContent = open ? more : 'show less';
  });
  return append(box, [head, button]);
}

const HEX_ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const HEX_TX = /^0x[0-9a-fA-F]{64}$/;

/**
 * A link to `kind` (address or tx) `value` on the network's explorer, or null. The base
 * comes from the built-in presets (https only) and the value must be plain hex, so no
 * record string ever becomes part of a URL.
 */
export function explorerLink(network, kind, value, label = value) {
  const base = network.explorerUrl;
  if (typeof base !== 'string' || !base.startsWith('https://')) return null;
  const pattern = kind === 'address' ? HEX_ADDRESS : kind === 'tx' ? HEX_TX : null;
  if (pattern === null || !pattern.test(value)) return null;
  const link = el('a', { class: 'explorer' }, label);
  link.href = `${base}/${kind}/${value}`;
  link.target = '_blank';
  link.rel = 'noopener noreferrer';
  return link;
}

export function formatBytes(n) {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatTime(seconds) {
  return Number.isFinite(seconds) && seconds > 0 ? new Date(seconds * 1000).toISOString().replace('.000Z', 'Z') : '?';
}
