// The verification checks of docs/verification.md as pure functions: no DOM, no network.
// `evaluate(inputs)` turns what has been observed so far (the model digest, the registry
// answer, the blobs read from Walrus) into a status for every check, the lineage facts to
// show, and the blobs it still needs. The page loops: fetch what is needed, evaluate again.
// tests/vectors/verify/*.json pin these rules for this page and for `okai verify` alike.
import {
  ZERO_DIGEST,
  canonicalJson,
  decodeUtf8,
  digestOfText,
  isAddress,
  isBlobId,
  parseDigest,
} from './encoding.js';
import { attestedInputs } from './attestation.js';

export const PASSED = 'passed';
export const FAILED = 'failed';
export const NOT_CHECKED = 'not checked';
export const PENDING = 'pending';

export const CHECKS = [
  ['model.digest', 'What are we verifying?'],
  ['record.exists', 'Is this model recorded?'],
  ['attestation.digest', 'Is the attestation the recorded one?'],
  ['attestation.statement', 'Is it a well-formed statement about this model?'],
  ['attestation.matches-record', 'Does it name the recorded inputs?'],
  ['image.registered', 'Is the image a registered one?'],
  ['datasets.manifests', 'Is the data the recorded data (manifests)?'],
  ['datasets.shards', 'Is the data the recorded data (bytes)?'],
  ['image.bytes', 'Are the image bytes the registered ones?'],
  ['reproduce', 'Does training reproduce the model?'],
  ['witnesses', 'Who else re-trained it bit for bit?'],
];
export const CHECK_IDS = CHECKS.map(([id]) => id);

// Caps on what is held in memory to parse; shards are only hashed, never held.
export const MAX_ATTESTATION_BYTES = 4 << 20;
export const MAX_MANIFEST_BYTES = 32 << 20;

/** The blob key of the file `identifier` of quilt `quiltId`: `by-quilt-id/<id>/<identifier>`. */
export const quiltFileKey = (quiltId, identifier) => `by-quilt-id/${quiltId}/${identifier}`;

const passed = (reason) => ({ status: PASSED, reason });
const failed = (reason) => ({ status: FAILED, reason });
const notChecked = (reason) => ({ status: NOT_CHECKED, reason });
const pending = (reason) => ({ status: PENDING, reason });

function parseJsonBlob(blob) {
  try {
    return { value: JSON.parse(decodeUtf8(blob.bytes)) };
  } catch (error) {
    return { error: error instanceof SyntaxError ? 'not valid JSON' : 'not UTF-8 text' };
  }
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Why a blob observation cannot be used: still loading, failed, or none (usable). */
function blobState(blobs, blobId) {
  const blob = blobs[blobId];
  if (blob === undefined) return 'pending';
  if (blob.error !== undefined) return 'error';
  return 'ok';
}

/**
 * The checks, facts and next reads for `inputs`:
 *   options   { deep, image, reproduce } - which optional checks were requested
 *   network   { name, chainId }           - the selected network (expected chain ID)
 *   model     { digest } | { given } | { error } | undefined
 *   chain     { chainId, record, image, witnesses } | { error } | undefined
 *   blobs     { [key]: { digest, size, bytes? } | { error } }, keyed by blob ID,
 *             by-quilt-patch-id/<patch ID> or by-quilt-id/<quilt ID>/<identifier> (see walrus.js)
 *   reproducedDigest  the digest a re-run produced (CLI only)
 */
export function evaluate(inputs) {
  const options = inputs.options ?? {};
  const blobs = inputs.blobs ?? {};
  const checks = {};
  const facts = {};
  const needs = [];
  const need = (blobId, keep, maxBytes, label) => {
    if (blobs[blobId] === undefined && !needs.some((n) => n.blobId === blobId)) {
      needs.push({ blobId, keep, maxBytes, label });
    }
  };

  // model.digest
  let modelDigest = null;
  if (inputs.model === undefined) checks['model.digest'] = pending('hashing the model file');
  else if (inputs.model.error !== undefined) checks['model.digest'] = failed(`cannot read the model file: ${inputs.model.error}`);
  else if (inputs.model.digest !== undefined) {
    modelDigest = inputs.model.digest;
    checks['model.digest'] = passed('SHA-256 of the model file, computed here');
  } else {
    modelDigest = parseDigest(inputs.model.given ?? '');
    checks['model.digest'] = modelDigest
      ? passed('digest given, not computed from a file')
      : failed('not a SHA-256 digest (want sha256:<64 hex>)');
  }
  facts.modelDigest = modelDigest;

  // record.exists
  const chain = inputs.chain;
  let record = null;
  if (modelDigest === null) checks['record.exists'] = notChecked('no model digest');
  else if (chain === undefined) checks['record.exists'] = pending('reading the registry');
  else if (chain.error !== undefined) checks['record.exists'] = failed(chain.error);
  else if (chain.chainId !== inputs.network.chainId) {
    checks['record.exists'] = failed(
      `the RPC endpoint is on chain ${chain.chainId}, but ${inputs.network.name} is chain ${inputs.network.chainId}`,
    );
  } else if (chain.record === null) checks['record.exists'] = failed('the registry holds no record of this model');
  else {
    const problem = recordProblem(chain.record);
    if (problem) checks['record.exists'] = failed(`the registry answered a malformed record: ${problem}`);
    else {
      record = chain.record;
      checks['record.exists'] = passed('recorded');
    }
  }
  facts.record = record;
  if (record !== null) {
    facts.image = chain.image;
    facts.witnesses = chain.witnesses;
  }

  // attestation.digest
  let statement = null;
  if (record === null) checks['attestation.digest'] = notChecked('no record');
  else {
    const id = record.attestationBlobId;
    need(id, true, MAX_ATTESTATION_BYTES, 'attestation');
    const state = blobState(blobs, id);
    if (state === 'pending') checks['attestation.digest'] = pending('reading the attestation from Walrus');
    else if (state === 'error') checks['attestation.digest'] = failed(`cannot read the attestation blob: ${blobs[id].error}`);
    else if (blobs[id].digest !== record.attestationDigest) {
      checks['attestation.digest'] = failed(`the attestation blob hashes to ${blobs[id].digest}, the record says ${record.attestationDigest}`);
    } else {
      checks['attestation.digest'] = passed('its SHA-256 is the recorded attestation digest');
      statement = blobs[id];
    }
  }

  // attestation.statement
  let attested = null;
  if (statement === null) {
    checks['attestation.statement'] = notChecked(record === null ? 'no record' : 'no recorded attestation to read');
  } else {
    const parsed = parseJsonBlob(statement);
    const result = parsed.error ? { error: `the attestation is ${parsed.error}` } : attestedInputs(parsed.value, modelDigest);
    if (result.error) checks['attestation.statement'] = failed(result.error);
    else {
      attested = result;
      checks['attestation.statement'] = passed('in-toto Statement v1, SLSA Provenance v1, about this model');
    }
  }
  facts.attested = attested;

  // attestation.matches-record
  let matches = false;
  if (attested === null) checks['attestation.matches-record'] = notChecked('no well-formed recorded attestation');
  else {
    const problem = mismatch(attested, record);
    if (problem) checks['attestation.matches-record'] = failed(problem);
    else {
      matches = true;
      checks['attestation.matches-record'] = passed('job, datasets and image are those recorded');
    }
  }

  // image.registered
  checks['image.registered'] = imageRegistered(record, facts.image, attested);
  if (record !== null && facts.image) {
    need(facts.image.manifestBlobId, true, MAX_MANIFEST_BYTES, 'image manifest');
    facts.imageManifest = imageManifest(blobs, facts.image, record);
    // Wrong bytes for the image claim: a failed check, and nothing of them is shown.
    if (facts.imageManifest.forged) checks['image.registered'] = failed(facts.imageManifest.error);
  }

  // datasets.manifests and datasets.shards
  const data = datasetChecks(options, record, attested, matches, blobs, need);
  checks['datasets.manifests'] = data.manifests;
  checks['datasets.shards'] = data.shards;
  facts.datasets = data.datasets;

  checks['image.bytes'] = imageBytes(options, record, facts.image, facts.imageManifest, blobs, need);
  checks['reproduce'] = reproduce(options, record, modelDigest, inputs.reproducedDigest);

  // witnesses: informational, listed, never failed
  if (record === null) checks['witnesses'] = notChecked('no record');
  else {
    const count = facts.witnesses.length;
    checks['witnesses'] = passed(
      count === 0 ? 'nobody has recorded a reproduction yet' : `${count} account${count === 1 ? '' : 's'} recorded a bit-for-bit reproduction`,
    );
  }

  return { checks, facts, needs, verdict: verdict(checks, options) };
}

/** The checks a run asked for: the always ones, plus those its options turn on. */
export function requestedChecks(options = {}) {
  return CHECK_IDS.filter((id) => {
    if (id === 'datasets.manifests' || id === 'datasets.shards') return Boolean(options.deep);
    if (id === 'image.bytes') return Boolean(options.deep && options.image);
    if (id === 'reproduce') return Boolean(options.reproduce);
    return true;
  });
}

/** 'verified' only if every requested check passed; 'pending' while any is unanswered. */
export function verdict(checks, options) {
  const statuses = requestedChecks(options).map((id) => checks[id].status);
  if (statuses.some((s) => s === FAILED)) return 'not verified';
  if (statuses.some((s) => s === PENDING)) return 'pending';
  return statuses.every((s) => s === PASSED) ? 'verified' : 'not verified';
}

function recordProblem(record) {
  const digests = [record.imageDigest, record.jobDigest, record.attestationDigest, ...record.datasetManifestDigests];
  if (!digests.every((d) => parseDigest(d) === d)) return 'a digest is malformed';
  if (record.datasetManifestDigests.length === 0) return 'no datasets';
  if (!isBlobId(record.attestationBlobId)) return 'the attestation blob ID is malformed';
  if (!isAddress(record.submitter)) return 'the submitter is not an address';
  return null;
}

function mismatch(attested, record) {
  if (attested.jobDigest !== record.jobDigest) {
    return `the attestation's job hashes to ${attested.jobDigest}, the record says ${record.jobDigest}`;
  }
  const want = record.datasetManifestDigests;
  const got = attested.datasets.map((d) => d.digest);
  if (got.length !== want.length) return `the attestation names ${got.length} datasets, the record ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) return `dataset ${i + 1}: the attestation names ${got[i]}, the record ${want[i]}`;
  }
  if (attested.imageDigest !== record.imageDigest) {
    return `the attestation names image ${attested.imageDigest}, the record ${record.imageDigest}`;
  }
  return null;
}

function imageRegistered(record, image, attested) {
  if (record === null) return notChecked('no record');
  if (record.imageDigest === ZERO_DIGEST) return failed('unregistered host: the model was trained on no registered image');
  if (!image) return failed(`the image ${record.imageDigest} is not registered`);
  if (attested === null) return notChecked('needs the recorded, well-formed attestation for the system it ran');
  if (attested.systemToplevel === null) return failed('the attestation says the node ran no registered image');
  const ran = digestOfText(attested.systemToplevel);
  if (ran !== image.systemToplevel) {
    return failed(`the node ran a system whose toplevel hashes to ${ran}, the registered image's is ${image.systemToplevel}`);
  }
  return passed('registered, and the node ran its system');
}

/** What the image manifest says, and whether it agrees with the registry (display only). */
function imageManifest(blobs, image, record) {
  const state = blobState(blobs, image.manifestBlobId);
  if (state !== 'ok') return { state, error: blobs[image.manifestBlobId]?.error };
  const served = blobs[image.manifestBlobId];
  if (image.manifestSha256 && served.digest !== image.manifestSha256) {
    const by = served.source ? ` served by ${served.source}` : '';
    return {
      state: 'error',
      forged: true,
      error: `the image manifest${by} hashes to ${served.digest}, but the image claim of ${image.registrant} says ${image.manifestSha256}`,
    };
  }
  const parsed = parseJsonBlob(served);
  const doc = parsed.value;
  if (parsed.error || !isObject(doc) || doc.schema !== 'okai.image/v1' || !isObject(doc.nixos)) {
    return { state: 'error', error: 'not an okai.image/v1 document' };
  }
  const toplevel = typeof doc.nixos.systemToplevel === 'string' ? doc.nixos.systemToplevel : '';
  const text = (value) => (typeof value === 'string' ? value : null);
  return {
    state: 'ok',
    consistent: parseDigest(text(doc.sha256) ?? '') === record.imageDigest && digestOfText(toplevel) === image.systemToplevel,
    fileName: text(doc.fileName),
    format: text(doc.format),
    size: Number.isSafeInteger(doc.size) ? doc.size : null,
    blobId: isBlobId(doc.blobId) ? doc.blobId : null,
    systemToplevel: toplevel,
    nixpkgsRevision: text(doc.nixos.nixpkgsRevision),
    flakeRevision: text(doc.nixos.flakeRevision),
  };
}

const SHARD_KEYS = ['path', 'offset', 'size', 'sha256', 'blobId', 'mediaType'];
const FILE_KEYS = ['path', 'size', 'sha256', 'mediaType'];

/** A path that stays inside the dataset when restored (as okai.manifest checks it). */
function safePath(path) {
  if (typeof path !== 'string' || path.length === 0 || [...path].length > 4096) return false;
  if (path.startsWith('/') || path.includes('\\') || path.includes('\0')) return false;
  return !path.split('/').includes('..');
}

function hasOnly(value, keys) {
  return isObject(value) && Object.keys(value).every((key) => keys.includes(key));
}

function entryProblem(entry, keys) {
  if (!hasOnly(entry, keys)) return 'has unknown fields';
  if (!safePath(entry.path)) return 'has an unsafe path';
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) return 'has a bad size';
  if (typeof entry.sha256 !== 'string' || parseDigest(entry.sha256) === null) return 'has a bad sha256';
  if (entry.mediaType !== undefined && typeof entry.mediaType !== 'string') return 'has a bad mediaType';
  return null;
}

/**
 * An okai.dataset/v1 manifest's shards, or { error }: the structure and consistency rules
 * of okai.manifest.DatasetManifest (fields, safe paths, contiguous shards, totals).
 */
export function datasetShards(doc) {
  if (!isObject(doc) || doc.schema !== 'okai.dataset/v1') return { error: 'not an okai.dataset/v1 document' };
  if (!hasOnly(doc, ['schema', 'name', 'files', 'shards', 'totals'])) return { error: 'unknown fields' };
  if (typeof doc.name !== 'string' || [...doc.name].length < 1 || [...doc.name].length > 200) return { error: 'no name, or one over 200 characters' };
  if (!Array.isArray(doc.files) || !Array.isArray(doc.shards)) return { error: 'no file or shard list' };
  for (const [index, file] of doc.files.entries()) {
    const problem = entryProblem(file, FILE_KEYS);
    if (problem) return { error: `file ${index + 1} ${problem}` };
  }
  const byPath = new Map();
  for (const [index, shard] of doc.shards.entries()) {
    const problem = entryProblem(shard, SHARD_KEYS) ?? (isBlobId(shard.blobId) ? null : 'has a bad blobId') ?? (Number.isSafeInteger(shard.offset) && shard.offset >= 0 ? null : 'has a bad offset');
    if (problem) return { error: `shard ${index + 1} ${problem}` };
    byPath.set(shard.path, [...(byPath.get(shard.path) ?? []), shard]);
  }
  for (const file of doc.files) {
    const pieces = (byPath.get(file.path) ?? []).sort((a, b) => a.offset - b.offset);
    byPath.delete(file.path);
    let expected = 0;
    for (const shard of pieces) {
      if (shard.offset !== expected) return { error: 'shards leave a gap or overlap' };
      expected += shard.size;
    }
    if (expected !== file.size) return { error: "a file's shards do not add up to its size" };
  }
  if (byPath.size > 0) return { error: 'shards refer to files not listed' };
  const bytes = doc.files.reduce((sum, file) => sum + file.size, 0);
  const totals = doc.totals;
  if (!hasOnly(totals, ['files', 'shards', 'bytes']) || totals.files !== doc.files.length || totals.shards !== doc.shards.length || totals.bytes !== bytes) {
    return { error: 'totals do not match the files and shards' };
  }
  const shards = doc.shards.map((s) => ({ blobId: s.blobId, sha256: s.sha256, size: s.size, path: s.path }));
  return { name: doc.name, files: doc.files.length, shards, bytes };
}

function datasetChecks(options, record, attested, matches, blobs, need) {
  const datasets = [];
  if (record !== null && attested !== null) {
    for (const [index, ref] of attested.datasets.entries()) datasets.push({ index, ...ref, manifest: null });
  }
  if (!options.deep) {
    const reason = 'not requested (Verify data, or okai verify --deep)';
    return { manifests: notChecked(reason), shards: notChecked(reason), datasets };
  }
  if (record === null) return { manifests: notChecked('no record'), shards: notChecked('no record'), datasets };
  if (!matches) {
    const reason = 'needs the recorded attestation, matching the record, to locate the data';
    return { manifests: notChecked(reason), shards: notChecked(reason), datasets };
  }

  // Manifests: each fetched by the locator the attestation gives, hashed canonically.
  let manifests = passed(`${datasets.length} manifest${datasets.length === 1 ? '' : 's'} match the record`);
  for (const dataset of datasets) {
    const label = `dataset ${dataset.index + 1}`;
    if (dataset.kind !== 'manifest') continue; // raw data: no manifest, its bytes are the one shard
    need(dataset.blobId, true, MAX_MANIFEST_BYTES, `${label} manifest`);
    const state = blobState(blobs, dataset.blobId);
    let problem = null;
    if (state === 'pending') {
      if (manifests.status === PASSED) manifests = pending('reading dataset manifests');
      continue;
    }
    if (state === 'error') problem = `cannot read its manifest: ${blobs[dataset.blobId].error}`;
    else {
      const parsed = parseJsonBlob(blobs[dataset.blobId]);
      if (parsed.error) problem = `its manifest is ${parsed.error}`;
      else {
        let canonical = null;
        try {
          canonical = canonicalJson(parsed.value);
        } catch (error) {
          problem = `its manifest has no canonical form: ${error.message}`;
        }
        if (canonical !== null) {
          const digest = digestOfText(canonical);
          if (digest !== dataset.digest) problem = `its manifest hashes to ${digest}, the record says ${dataset.digest}`;
          else {
            const read = datasetShards(parsed.value);
            if (read.error) problem = `its manifest: ${read.error}`;
            else dataset.manifest = read;
          }
        }
      }
    }
    if (problem && manifests.status !== FAILED) manifests = failed(`${label}: ${problem}`);
  }
  if (manifests.status !== PASSED) {
    const shards = manifests.status === PENDING ? pending('waiting for the manifests') : notChecked('the manifests did not check out');
    return { manifests, shards, datasets };
  }

  // Shards: every one re-downloaded and hashed while streaming.
  let shards = null;
  let total = 0;
  let waiting = 0;
  for (const dataset of datasets) {
    const label = `dataset ${dataset.index + 1}`;
    const list =
      dataset.kind === 'manifest' ? dataset.manifest.shards : [{ blobId: dataset.blobId, sha256: dataset.digest, size: null, path: `(${dataset.kind})` }];
    for (const [index, shard] of list.entries()) {
      total += 1;
      need(shard.blobId, false, shard.size ?? Infinity, `${label} shard ${index + 1}`);
      const state = blobState(blobs, shard.blobId);
      if (state === 'pending') {
        waiting += 1;
        continue;
      }
      if (shards !== null) continue;
      const blob = blobs[shard.blobId];
      if (state === 'error') shards = failed(`${label}, shard ${index + 1} (${shard.path}): cannot read it: ${blob.error}`);
      else if (blob.digest !== shard.sha256) shards = failed(`${label}, shard ${index + 1} (${shard.path}): its bytes hash to ${blob.digest}, the manifest says ${shard.sha256}`);
      else if (shard.size !== null && blob.size !== shard.size) shards = failed(`${label}, shard ${index + 1} (${shard.path}): ${blob.size} bytes, the manifest says ${shard.size}`);
    }
  }
  if (shards === null) {
    shards = waiting > 0 ? pending(`${total - waiting} of ${total} shards checked`) : passed(`all ${total} shard${total === 1 ? '' : 's'} match their manifests`);
  }
  return { manifests, shards, datasets };
}

function imageBytes(options, record, image, manifest, blobs, need) {
  if (!(options.deep && options.image)) return notChecked('not requested (okai verify --deep --image)');
  if (record === null) return notChecked('no record');
  if (record.imageDigest === ZERO_DIGEST || !image) return notChecked('no registered image');
  if (manifest.state === 'pending') return pending('reading the image manifest');
  if (manifest.state === 'error') return failed(`cannot use the image manifest: ${manifest.error}`);
  if (!manifest.consistent) return failed('the image manifest does not describe the registered image');
  if (manifest.blobId === null) return failed('the image manifest gives no quilt ID for the image');
  if (manifest.fileName === null) return failed('the image manifest gives no file name for the image');
  // okai image publish stores the image as the file `fileName` of a one-file quilt:
  // the manifest's blob ID is the quilt's, and the image bytes are that file.
  const key = quiltFileKey(manifest.blobId, manifest.fileName);
  need(key, false, manifest.size ?? Infinity, 'image');
  const state = blobState(blobs, key);
  if (state === 'pending') return pending('downloading the image');
  const blob = blobs[key];
  if (state === 'error') return failed(`cannot read the image: ${blob.error}`);
  if (blob.digest !== record.imageDigest) return failed(`the image bytes hash to ${blob.digest}, the registry says ${record.imageDigest}`);
  return passed('the image bytes are the registered ones');
}

function reproduce(options, record, modelDigest, reproducedDigest) {
  if (!options.reproduce) return notChecked('not requested (okai verify --reproduce, CLI only)');
  if (record === null) return notChecked('no record');
  if (reproducedDigest === undefined) return pending('re-training');
  if (reproducedDigest !== modelDigest) return failed(`re-training produced ${reproducedDigest}`);
  return passed('re-training produced the same bytes');
}
