// Streaming SHA-256: a file is read in fixed-size slices and a download chunk by chunk,
// so memory stays flat whatever the size (WebCrypto's digest() needs the whole input).
import { createSHA256 } from 'hash-wasm';
import { PREFIX } from './encoding.js';

export const SLICE_BYTES = 8 << 20;

/**
 * SHA-256 of a File (or Blob), read slice by slice; the next slice is read while the
 * current one is hashed. `onProgress(done, total)` after each slice; `signal` aborts.
 */
export async function sha256File(file, { onProgress = () => {}, signal } = {}) {
  const hasher = await createSHA256();
  hasher.init();
  const total = file.size;
  let offset = 0;
  let pending = total > 0 ? file.slice(0, Math.min(SLICE_BYTES, total)).arrayBuffer() : null;
  onProgress(0, total);
  while (pending !== null) {
    const chunk = new Uint8Array(await pending);
    signal?.throwIfAborted();
    offset += chunk.byteLength;
    pending = offset < total ? file.slice(offset, Math.min(offset + SLICE_BYTES, total)).arrayBuffer() : null;
    hasher.update(chunk);
    onProgress(offset, total);
  }
  return PREFIX + hasher.digest('hex');
}

export class TooLargeError extends Error {}

/**
 * Hash a byte stream (a fetch body). Keeps the bytes only when `keep` (for documents to
 * parse), and stops as soon as more than `maxBytes` arrive, so a hostile server cannot
 * fill memory. Returns { digest, size, bytes? }.
 */
export async function sha256Stream(stream, { maxBytes = Infinity, keep = false, onBytes = () => {}, signal } = {}) {
  const hasher = await createSHA256();
  hasher.init();
  const reader = stream.getReader();
  const kept = [];
  let size = 0;
  try {
    for (;;) {
      signal?.throwIfAborted();
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) throw new TooLargeError(`more than ${maxBytes} bytes`);
      hasher.update(value);
      if (keep) kept.push(value);
      onBytes(value.byteLength);
    }
  } finally {
    reader.releaseLock();
  }
  const result = { digest: PREFIX + hasher.digest('hex'), size };
  if (keep) {
    const bytes = new Uint8Array(size);
    let at = 0;
    for (const part of kept) {
      bytes.set(part, at);
      at += part.byteLength;
    }
    result.bytes = bytes;
  }
  return result;
}
