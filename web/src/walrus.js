// Reads from a Walrus aggregator. A blob ID is only a locator: callers accept bytes because
// their SHA-256 matches a digest they already trust, never because an aggregator sent them.
import { isBlobId } from './encoding.js';
import { sha256Stream } from './hash.js';

const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
const ATTEMPTS = 3;
/** No answer, or no byte of the body, for this long: the attempt is abandoned (cancelled). */
export const STALL_MS = 30_000;
/** Most read of a blob with no size limit given: `okai verify --max-blob-size`'s default. */
export const MAX_UNSIZED_BLOB_BYTES = 2 ** 30;

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
 * An AbortSignal that follows `signal` and also fires once `poke` has not been called for
 * `stallMs`: a stalled aggregator costs seconds, and its connection is cancelled.
 */
function watchdog(signal, stallMs) {
  const controller = new AbortController();
  const follow = () => controller.abort(signal.reason);
  signal?.addEventListener('abort', follow, { once: true });
  let timer;
  const poke = () => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(new WalrusReadError(`the aggregator sent nothing for ${stallMs / 1000} s`)), stallMs);
  };
  poke();
  const stop = () => {
    clearTimeout(timer);
    signal?.removeEventListener('abort', follow);
  };
  return { signal: controller.signal, poke, stop };
}

/**
 * Fetch a blob and hash it while it streams (transient failures retried a bounded number
 * of times). Options as for sha256Stream, plus `stallMs` (default STALL_MS); `maxBytes`
 * defaults to MAX_UNSIZED_BLOB_BYTES. Returns { digest, size, bytes? }.
 */
export async function readBlob(aggregator, blobId, options = {}) {
  const url = blobUrl(aggregator, blobId);
  const { stallMs = STALL_MS, maxBytes = MAX_UNSIZED_BLOB_BYTES, onBytes = () => {} } = options;
  let lastError = null;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    if (attempt > 0) await sleep(250 * 2 ** attempt, options.signal);
    const dog = watchdog(options.signal, stallMs);
    try {
      const response = await fetch(url, {
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
        cache: 'no-store',
        signal: dog.signal,
      });
      if (response.ok) {
        const stream = sha256Stream(response.body, {
          ...options,
          maxBytes,
          signal: dog.signal,
          onBytes: (n) => {
            dog.poke();
            onBytes(n);
          },
        });
        return await stream;
      }
      await response.body?.cancel();
      lastError = new WalrusReadError(`the aggregator answered HTTP ${response.status}`);
      if (!RETRY_STATUSES.has(response.status)) break;
    } catch (error) {
      if (options.signal?.aborted) throw error;
      if (!dog.signal.aborted) {
        if (!(error instanceof TypeError)) throw error; // too large, or a bug: not the network
        lastError = new WalrusReadError(`cannot reach the aggregator (${error.message})`);
      } else {
        lastError = dog.signal.reason;
      }
    } finally {
      dog.stop();
    }
  }
  throw lastError;
}
