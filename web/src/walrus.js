// Reads from a Walrus aggregator. A blob ID is only a locator: callers accept bytes because
// their SHA-256 matches a digest they already trust, never because an aggregator sent them.
import { isBlobId } from './encoding.js';
import { sha256Stream } from './hash.js';

const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
const ATTEMPTS = 3;

export class WalrusReadError extends Error {}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}

const QUILT_PATCH = /^by-quilt-patch-id\/[A-Za-z0-9_-]{1,128}$/;
const QUILT_FILE = /^by-quilt-id\/([A-Za-z0-9_-]{43})\/(.{1,255})$/su;

/**
 * The URL of a blob on `aggregator`: `blobId` is a blob ID, `by-quilt-patch-id/<id>`, or
 * `by-quilt-id/<quilt ID>/<identifier>` (a file of a quilt, such as a published image),
 * validated and the identifier escaped, so that it cannot inject a path or query.
 */
export function blobUrl(aggregator, blobId) {
  const base = aggregator.replace(/\/+$/, '') + '/v1/blobs/';
  const quiltFile = QUILT_FILE.exec(blobId);
  if (quiltFile !== null && isBlobId(quiltFile[1])) return `${base}by-quilt-id/${quiltFile[1]}/${encodeURIComponent(quiltFile[2])}`;
  if (!isBlobId(blobId) && !QUILT_PATCH.test(blobId)) throw new WalrusReadError('not a Walrus blob ID');
  return base + blobId;
}

/**
 * Fetch a blob and hash it while it streams (transient failures retried a bounded number
 * of times). Options as for sha256Stream. Returns { digest, size, bytes? }.
 */
export async function readBlob(aggregator, blobId, options = {}) {
  const url = blobUrl(aggregator, blobId);
  let lastError = null;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (attempt > 0) await sleep(250 * 2 ** attempt, options.signal);
    let response;
    try {
      response = await fetch(url, {
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
        cache: 'no-store',
        signal: options.signal,
      });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      lastError = new WalrusReadError(`cannot reach the aggregator (${error.message})`);
      continue;
    }
    if (response.ok) return sha256Stream(response.body, options);
    await response.body?.cancel();
    lastError = new WalrusReadError(`the aggregator answered HTTP ${response.status}`);
    if (!RETRY_STATUSES.has(response.status)) break;
  }
  throw lastError;
}
