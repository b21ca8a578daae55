// What a page would observe for a vector's inputs (tests/vectors/verify/*.json, or a
// generated case): each blob the rules ask for, hashed, kept only when asked, refused
// above its size cap; evaluated again until nothing more is needed.
// tests/vector_runner.py serves them the same way to okai.verify.rules.
import { createHash } from 'node:crypto';
import { evaluate } from '../src/rules.js';

const sha256 = (bytes) => 'sha256:' + createHash('sha256').update(bytes).digest('hex');

export function observe(inputs, judge = evaluate) {
  const model = inputs.model.bytesBase64 !== undefined ? { digest: sha256(Buffer.from(inputs.model.bytesBase64, 'base64')) } : inputs.model;
  const blobs = {};
  const state = { ...inputs, model, blobs };
  for (let round = 0; round < 10; round++) {
    const result = judge(state);
    if (result.needs.length === 0) return result;
    for (const { blobId, keep, maxBytes } of result.needs) {
      const given = Object.hasOwn(inputs.blobs, blobId) ? inputs.blobs[blobId] : undefined;
      if (given === undefined) blobs[blobId] = { error: 'HTTP 404 BLOB_NOT_FOUND' };
      else if (given.error !== undefined) blobs[blobId] = { error: given.error };
      else {
        const bytes = new Uint8Array(Buffer.from(given.bytesBase64, 'base64'));
        if (bytes.length > maxBytes) blobs[blobId] = { error: `more than ${maxBytes} bytes` };
        else blobs[blobId] = { digest: sha256(bytes), size: bytes.length, ...(keep ? { bytes } : {}) };
      }
    }
  }
  throw new Error('the rules kept asking for blobs');
}
