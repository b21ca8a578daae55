// The page's check rules against the shared vectors (tests/vectors/verify/*.json), which
// `okai verify` is tested against too. Run: `node --test test/` in web/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CHECK_IDS } from '../src/rules.js';
import { observe } from './observe.js';
import { canonicalJson, blobIdFromBytes32, isBlobId, parseDigest } from '../src/encoding.js';
import { blobUrl } from '../src/walrus.js';

const VECTORS = fileURLToPath(new URL('../../tests/vectors/verify/', import.meta.url));
const files = readdirSync(VECTORS).filter((name) => name.endsWith('.json')).sort();

test('there are vectors', () => assert.ok(files.length >= 20));

for (const file of files) {
  const vector = JSON.parse(readFileSync(VECTORS + file, 'utf8'));
  test(`vector ${vector.name}`, () => {
    const result = observe(vector.inputs);
    const got = Object.fromEntries(CHECK_IDS.map((id) => [id, result.checks[id].status]));
    assert.deepEqual(got, vector.expected.checks, JSON.stringify(Object.fromEntries(CHECK_IDS.map((id) => [id, result.checks[id].reason]))));
    assert.equal(result.verdict, vector.expected.verdict);
    assert.equal(result.facts.modelDigest, vector.expected.modelDigest);
    for (const [id, code] of Object.entries(vector.expected.codes ?? {})) assert.equal(result.checks[id].code, code, id);
    for (const id of CHECK_IDS) assert.equal(typeof result.checks[id].reason, 'string');
  });
}

test('canonical JSON sorts keys by UTF-16 code units and formats numbers as ECMAScript', () => {
  assert.equal(canonicalJson({ b: [1, 2.5, 1e-7, -0], a: 'é\u2028', '\ud83d\ude00': null, '\u00e9': true }), '{"a":"é\u2028","b":[1,2.5,1e-7,0],"é":true,"\ud83d\ude00":null}');
  assert.throws(() => canonicalJson({ n: 2 ** 53 }));
  assert.throws(() => canonicalJson({ s: '\ud800' }));
  // Keys JavaScript objects treat apart: integer-like ones (listed first, in numeric order)
  // and `__proto__`, an own key once JSON.parse made it.
  const parsed = JSON.parse('{"b":1,"__proto__":{"z":1,"y":2},"a":[{"y":1,"x":[0.5]}]}');
  assert.equal(canonicalJson(parsed), '{"__proto__":{"y":2,"z":1},"a":[{"x":[0.5],"y":1}],"b":1}');
  assert.equal(canonicalJson({ b: { z: 1, 10: 2, 9: 3 }, a: 0 }), '{"a":0,"b":{"10":2,"9":3,"z":1}}');
  assert.throws(() => canonicalJson({ a: [{ s: '\udc00' }] }));
  assert.throws(() => canonicalJson({ a: [1, undefined] }));
});

test('blob IDs and digests parse strictly', () => {
  assert.equal(blobIdFromBytes32('0x' + 'ff'.repeat(32)), '_'.repeat(42) + '8');
  assert.ok(isBlobId('M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk'));
  assert.ok(!isBlobId('M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUl'));
  assert.equal(parseDigest(' SHA256:' + 'AB'.repeat(32)), 'sha256:' + 'ab'.repeat(32));
  assert.equal(parseDigest('sha256:' + 'ab'.repeat(31)), null);
  assert.equal(parseDigest('sha256:' + 'ab'.repeat(32) + '\u202e'), null);
});

test('blob keys become aggregator URLs, a quilt file by quilt ID and escaped identifier', () => {
  const id = 'M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk';
  assert.equal(blobUrl('http://a/', id), `http://a/v1/blobs/${id}`);
  assert.equal(blobUrl('http://a', `by-quilt-id/${id}/okai-worker.qcow2`), `http://a/v1/blobs/by-quilt-id/${id}/okai-worker.qcow2`);
  assert.equal(blobUrl('http://a', `by-quilt-id/${id}/../x?y#z`), `http://a/v1/blobs/by-quilt-id/${id}/..%2Fx%3Fy%23z`);
  assert.throws(() => blobUrl('http://a', `by-quilt-id/${id.slice(0, 42)}l/x.qcow2`));
  assert.throws(() => blobUrl('http://a', `by-quilt-id/${id}/`));
  assert.throws(() => blobUrl('http://a', `${id}/../../admin`));
});
