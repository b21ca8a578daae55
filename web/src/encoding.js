// Pure conversions between the forms a digest or blob ID takes: `sha256:<hex>` text,
// bytes32 hex on chain, URL-safe base64 Walrus blob IDs; plus RFC 8785 canonical JSON.
// Everything here is attacker-facing input parsing: validate, never guess.
import { sha256 } from '@noble/hashes/sha2';

export const PREFIX = 'sha256:';
export const ZERO_DIGEST = PREFIX + '0'.repeat(64);
const HEX64 = /^[0-9a-f]{64}$/;
const DOCUMENT_DIGEST = /^sha256:[0-9a-f]{64}$/;
const BLOB_ID = /^[A-Za-z0-9_-]{43}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/**
 * `sha256:<64 lowercase hex>` from `sha256:<hex>` (any case) or bare hex, with ASCII white
 * space around (as okai.digest.Digest.parse trims); null if malformed. For what people type.
 */
export function parseDigest(text) {
  if (typeof text !== 'string') return null;
  const value = text.replace(/^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$/g, '').toLowerCase();
  const hex = value.startsWith(PREFIX) ? value.slice(PREFIX.length) : value;
  return HEX64.test(hex) ? PREFIX + hex : null;
}

/** The bytes32 hex (`0x...`) of a parsed digest. */
export function digestToBytes32(digest) {
  return '0x' + digest.slice(PREFIX.length);
}

/** A `sha256:` digest from a bytes32 hex string as viem returns it. */
export function digestFromBytes32(hex) {
  const value = String(hex).toLowerCase();
  if (!/^0x[0-9a-f]{64}$/.test(value)) throw new Error('not a bytes32 value');
  return PREFIX + value.slice(2);
}

export function bytesToHex(bytes) {
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

export function hexToBytes(hex) {
  const clean = hex.startsWith('0x') ? hex.slice(2) : hex;
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) throw new Error('not hex');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The Walrus blob ID (unpadded URL-safe base64) of 32 raw bytes given as bytes32 hex. */
export function blobIdFromBytes32(hex) {
  const bytes = hexToBytes(hex);
  if (bytes.length !== 32) throw new Error('a blob ID has 32 bytes');
  let out = '';
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63] + B64URL[n & 63];
  }
  const n = (bytes[i] << 16) | (bytes[i + 1] << 8); // 32 = 10*3 + 2 bytes left
  return out + B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63];
}

/** True for a well-formed 43-character Walrus blob ID (32 bytes, canonical last character). */
export function isBlobId(text) {
  // 43 chars carry 258 bits; the last character may only use its top 4 bits.
  return typeof text === 'string' && BLOB_ID.test(text) && (B64URL.indexOf(text[42]) & 3) === 0;
}

/** A blob ID as documents write it: 43 URL-safe base64 characters (okai.manifest.BlobId). */
export function isBlobIdText(text) {
  return typeof text === 'string' && BLOB_ID.test(text);
}

/** A digest as documents write it: exactly `sha256:<64 lowercase hex>`, no other spelling. */
export function isDocumentDigest(text) {
  return typeof text === 'string' && DOCUMENT_DIGEST.test(text);
}

/**
 * A path that stays inside the dataset and has one spelling (okai.manifest.SafePath):
 * 1 to 4096 characters, no empty, `.` or `..` segment, no backslash or NUL.
 */
export function isSafePath(path) {
  // Characters are code points: only a path of over 4096 code units may have too many.
  if (typeof path !== 'string' || path.length === 0 || (path.length > 4096 && [...path].length > 4096)) return false;
  if (path.includes('\\') || path.includes('\0')) return false;
  return path.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

export function isAddress(text) {
  return typeof text === 'string' && ADDRESS.test(text);
}

/** Strict UTF-8 decoding: malformed bytes are an error, not U+FFFD. */
export function decodeUtf8(bytes) {
  return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
}

export function encodeUtf8(text) {
  return new TextEncoder().encode(text);
}

/** `sha256:<hex>` of bytes, synchronously. */
export function digestOfBytes(bytes) {
  return PREFIX + bytesToHex(sha256(bytes));
}

/** `sha256:<hex>` of a string's UTF-8 bytes, synchronously (the rules stay pure and sync). */
export function digestOfText(text) {
  return PREFIX + bytesToHex(sha256(encodeUtf8(text)));
}

export class CanonicalJsonError extends Error {}

/**
 * RFC 8785 (JCS) serialisation. ECMAScript number and string formatting is what JCS
 * specifies; keys sort by UTF-16 code units, which is JavaScript's default string order.
 * Integers beyond 2**53-1 have no exact form and are refused, as Python's rfc8785 does.
 */
export function canonicalJson(value) {
  // A plain value (a manifest of 100,000 shards) is a copy with sorted keys for the native
  // serialiser, three times faster; anything else is written piece by piece (or refused).
  return isPlain(value) ? JSON.stringify(sortedCopy(value)) : canonicalParts(value);
}

function canonicalParts(value) {
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new CanonicalJsonError('a number is not finite');
    if (Number.isInteger(value) && !Number.isSafeInteger(value)) {
      throw new CanonicalJsonError(`the integer ${value} is beyond 2**53-1`);
    }
    return JSON.stringify(value);
  }
  if (typeof value === 'string') {
    if (!value.isWellFormed()) throw new CanonicalJsonError('a string holds a lone surrogate');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return '[' + value.map(canonicalParts).join(',') + ']';
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return '{' + keys.map((key) => canonicalParts(key) + ':' + canonicalParts(value[key])).join(',') + '}';
  }
  throw new CanonicalJsonError(`no JSON form for a ${typeof value}`);
}

/**
 * Whether JSON.stringify writes `value`, keys sorted, as canonicalParts does: finite numbers
 * (integers safe), well-formed strings, and no key starting with a digit (objects put
 * integer keys first, in numeric order, whatever order they were added in).
 */
function isPlain(value) {
  if (value === null || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value) && (!Number.isInteger(value) || Number.isSafeInteger(value));
  if (typeof value === 'string') return value.isWellFormed();
  if (Array.isArray(value)) return value.every(isPlain);
  if (typeof value !== 'object') return false;
  for (const key of Object.keys(value)) {
    const first = key.charCodeAt(0);
    if ((first >= 48 && first <= 57) || !key.isWellFormed() || !isPlain(value[key])) return false;
  }
  return true;
}

function sortedCopy(value) {
  if (Array.isArray(value)) return value.map(sortedCopy);
  if (value === null || typeof value !== 'object') return value;
  const copy = Object.create(null); // so that a key `__proto__` is a key like any other
  for (const key of Object.keys(value).sort()) copy[key] = sortedCopy(value[key]);
  return copy;
}

/**
 * Strict JSON for documents others wrote, exactly as okai.strict_json reads it:
 * { value } or { problem } with the first of, in order, 'not-utf8', 'too-deep' (brackets
 * outside strings nest deeper than MAX_JSON_DEPTH), 'not-json', 'duplicate-key' and
 * 'big-number' (a number of magnitude 2**53 or more). See that module for why.
 */
export const MAX_JSON_DEPTH = 64;
export const JSON_PROBLEMS = {
  'not-utf8': 'not UTF-8 text',
  'too-deep': `nested deeper than ${MAX_JSON_DEPTH} levels`,
  'not-json': 'not valid JSON',
  'duplicate-key': 'JSON with a key named twice in one object',
  'big-number': 'JSON with a number of magnitude 2**53 or more',
};

export function parseJsonText(bytes) {
  let text;
  try {
    text = decodeUtf8(bytes);
  } catch {
    return { problem: 'not-utf8' };
  }
  const outside = outsideStrings(text);
  if (outside.depth > MAX_JSON_DEPTH) return { problem: 'too-deep' };
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return { problem: 'not-json' };
  }
  const seen = { keys: 0, big: false };
  tally(value, seen);
  // Each member of an object has one `:` outside strings; JSON.parse keeps one key per name.
  if (seen.keys !== outside.colons) return { problem: 'duplicate-key' };
  if (seen.big) return { problem: 'big-number' };
  return { value };
}

/** The end of the string token starting at the quote `start` (past its closing quote). */
function stringEnd(text, start) {
  let quote = start;
  for (;;) {
    quote = text.indexOf('"', quote + 1);
    if (quote === -1) return text.length;
    let before = quote - 1; // an odd run of backslashes before it escapes the quote
    while (text.charCodeAt(before) === 92) before--;
    if ((quote - before) % 2 === 1) return quote + 1;
  }
}

/** How deep `[` and `{` outside strings nest, and how many `:` lie outside strings. */
function outsideStrings(text) {
  let depth = 0;
  let deepest = 0;
  let colons = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) i = stringEnd(text, i) - 1; // "
    else if (c === 91 || c === 123) deepest = Math.max(deepest, ++depth); // [ {
    else if (c === 93 || c === 125) depth--; // ] }
    else if (c === 58) colons++; // :
  }
  return { depth: deepest, colons };
}

/** How deep `[` and `{` outside strings nest (okai.strict_json counts the same). */
export function nestingDepth(text) {
  return outsideStrings(text).depth;
}

/** Counts the keys of every object in `value`, and whether a number is 2**53 or more. */
function tally(value, seen) {
  if (typeof value === 'number') {
    if (!(Math.abs(value) < 2 ** 53)) seen.big = true;
  } else if (Array.isArray(value)) {
    for (const item of value) tally(item, seen);
  } else if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value);
    seen.keys += keys.length;
    for (const key of keys) tally(value[key], seen);
  }
}
