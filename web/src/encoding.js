// Pure conversions between the forms a digest or blob ID takes: `sha256:<hex>` text,
// bytes32 hex on chain, URL-safe base64 Walrus blob IDs; plus RFC 8785 canonical JSON.
// Everything here is attacker-facing input parsing: validate, never guess.
import { sha256 } from '@noble/hashes/sha2';

export const PREFIX = 'sha256:';
export const ZERO_DIGEST = PREFIX + '0'.repeat(64);
const HEX64 = /^[0-9a-f]{64}$/;
const BLOB_ID = /^[A-Za-z0-9_-]{43}$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** `sha256:<64 lowercase hex>` from `sha256:<hex>` (any case) or bare hex; null if malformed. */
export function parseDigest(text) {
  if (typeof text !== 'string') return null;
  const value = text.trim().toLowerCase();
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
  if (Array.isArray(value)) return '[' + value.map(canonicalJson).join(',') + ']';
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return '{' + keys.map((key) => canonicalJson(key) + ':' + canonicalJson(value[key])).join(',') + '}';
  }
  throw new CanonicalJsonError(`no JSON form for a ${typeof value}`);
}
