// The verification checks of docs/verification.md as pure functions: no DOM, no network.
// `evaluate(inputs)` turns what has been observed so far (the model digest, the registry
// answer, the blobs read from Walrus) into a status for every check, the lineage facts to
// show, and the blobs it still needs. The page loops: fetch what is needed, evaluate again.
// tests/vectors/verify/*.json pin these rules for this page and for `okai verify` alike.
import {
  JSON_PROBLEMS,
  ZERO_DIGEST,
  canonicalJson,
  digestOfText,
  isAddress,
  isBlobId,
  isBlobIdText,
  isDocumentDigest,
  isSafePath,
  parseDigest,
  parseJsonText,
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

const passed = (code, reason) => ({ status: PASSED, code, reason });
const failed = (code, reason) => ({ status: FAILED, code, reason });
const notChecked = (code, reason) => ({ status: NOT_CHECKED, code, reason });
const pending = (code, reason) => ({ status: PENDING, code, reason });

/** { value } or { problem: { code, text } } (see parseJsonText in encoding.js). */
function parseJsonBlob(blob) {
  const parsed = parseJsonText(blob.bytes);
  return parsed.problem ? { problem: { code: parsed.problem, text: JSON_PROBLEMS[parsed.problem] } } : parsed;
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Why a blob observation cannot be used: still loading, failed, or none (usable). */
function blobState(blobs, blobId) {
  const blob = Object.hasOwn(blobs, blobId) ? blobs[blobId] : undefined;
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
 * Each check is { status, code, reason }: `code` names the rule's branch, and is the one
 * `okai verify` gives for the same input (tests/test_verdict_differential.py).
 */
export function evaluate(inputs) {
  const blobs = inputs.blobs ?? {};
  const needs = [];
  const needed = new Set();
  const run = {
    inputs,
    options: inputs.options ?? {},
    blobs,
    facts: { modelDigest: null, record: null, attested: null, datasets: [] },
    needs,
    need(blobId, keep, maxBytes, label) {
      if (blobState(blobs, blobId) === 'pending' && !needed.has(blobId)) {
        needed.add(blobId);
        needs.push({ blobId, keep, maxBytes, label });
      }
    },
    statement: null,
    matches: false,
    manifests: null,
  };
  const checks = {};
  for (const [id, rule] of RULES) checks[id] = rule(run);
  return { checks, facts: run.facts, needs, verdict: verdict(checks, run.options) };
}

function modelDigest(run) {
  const model = run.inputs.model;
  if (model === undefined) return pending('hashing', 'hashing the model file');
  if (model.error !== undefined) return failed('unreadable', `cannot read the model file: ${model.error}`);
  if (model.digest !== undefined) {
    run.facts.modelDigest = model.digest;
    return passed('computed', 'SHA-256 of the model file, computed here');
  }
  run.facts.modelDigest = parseDigest(model.given ?? '');
  if (run.facts.modelDigest === null) return failed('malformed', 'not a SHA-256 digest (want sha256:<64 hex>)');
  return passed('given', 'digest given, not computed from a file');
}

function recordExists(run) {
  const { chain, network } = run.inputs;
  if (run.facts.modelDigest === null) return notChecked('no-model-digest', 'no model digest');
  if (chain === undefined) return pending('reading', 'reading the registry');
  if (chain.error !== undefined) return failed('unreachable', chain.error);
  if (chain.chainId !== network.chainId) {
    return failed('wrong-chain', `the RPC endpoint is on chain ${chain.chainId}, but ${network.name} is chain ${network.chainId}`);
  }
  if (chain.record === null) return failed('not-recorded', 'the registry holds no record of this model');
  const problem = recordProblem(chain.record);
  if (problem) return failed('malformed-record', `the registry answered a malformed record: ${problem}`);
  run.facts.record = chain.record;
  run.facts.image = chain.image;
  run.facts.witnesses = chain.witnesses;
  return passed('recorded', 'recorded');
}

function attestationDigest(run) {
  const { record } = run.facts;
  if (record === null) return notChecked('no-record', 'no record');
  const id = record.attestationBlobId;
  run.need(id, true, MAX_ATTESTATION_BYTES, 'attestation');
  const state = blobState(run.blobs, id);
  if (state === 'pending') return pending('reading', 'reading the attestation from Walrus');
  const blob = run.blobs[id];
  if (state === 'error') return failed('unreadable', `cannot read the attestation blob: ${blob.error}`);
  if (blob.digest !== record.attestationDigest) {
    return failed('mismatch', `the attestation blob hashes to ${blob.digest}, the record says ${record.attestationDigest}`);
  }
  run.statement = blob;
  return passed('matches', 'its SHA-256 is the recorded attestation digest');
}

function attestationStatement(run) {
  if (run.statement === null) {
    return run.facts.record === null ? notChecked('no-record', 'no record') : notChecked('no-attestation', 'no recorded attestation to read');
  }
  const parsed = parseJsonBlob(run.statement);
  if (parsed.problem) return failed(parsed.problem.code, `the attestation is ${parsed.problem.text}`);
  const result = attestedInputs(parsed.value, run.facts.modelDigest);
  if (result.error) return failed(result.code, result.error);
  run.facts.attested = result;
  return passed('well-formed', 'in-toto Statement v1, SLSA Provenance v1, about this model');
}

function attestationMatchesRecord(run) {
  const { attested, record } = run.facts;
  if (attested === null || record === null) return notChecked('no-attestation', 'no well-formed recorded attestation');
  const problem = mismatch(attested, record);
  if (problem) return failed(problem.code, problem.text);
  run.matches = true;
  return passed('matches', 'job, datasets and image are those recorded');
}

function imageRegistered(run) {
  const { record, image, attested } = run.facts;
  if (record === null) return notChecked('no-record', 'no record');
  if (image) {
    run.need(image.manifestBlobId, true, MAX_MANIFEST_BYTES, 'image manifest');
    run.facts.imageManifest = imageManifest(run.blobs, image, record);
    // Wrong bytes for the image claim: a failed check, and nothing of them is shown.
    if (run.facts.imageManifest.forged) return failed('forged-manifest', run.facts.imageManifest.error);
  }
  if (record.imageDigest === ZERO_DIGEST) return failed('unregistered-host', 'unregistered host: the model was trained on no registered image');
  if (!image) return failed('not-registered', `the image ${record.imageDigest} is not registered`);
  if (attested === null) return notChecked('no-attestation', 'needs the recorded, well-formed attestation for the system it ran');
  if (attested.systemToplevel === null) return failed('no-image-ran', 'the attestation says the node ran no registered image');
  const ran = digestOfText(attested.systemToplevel);
  if (ran !== image.systemToplevel) {
    return failed('other-system', `the node ran a system whose toplevel hashes to ${ran}, the registered image's is ${image.systemToplevel}`);
  }
  return passed('registered', 'registered, and the node ran its system');
}

/** Each dataset manifest, fetched by the locator the attestation gives, hashed canonically. */
function datasetsManifests(run) {
  const { record, attested } = run.facts;
  if (record !== null && attested !== null) {
    run.facts.datasets = attested.datasets.map((ref, index) => ({ index, ...ref, manifest: null }));
  }
  const blocked = dataBlocked(run);
  if (blocked) return blocked;
  const count = run.facts.datasets.length;
  let result = passed('match', `${count} manifest${count === 1 ? '' : 's'} match the record`);
  for (const dataset of run.facts.datasets) {
    if (dataset.kind !== 'manifest') continue; // raw data: no manifest, its bytes are the one shard
    const label = `dataset ${dataset.index + 1}`;
    run.need(dataset.blobId, true, MAX_MANIFEST_BYTES, `${label} manifest`);
    const state = blobState(run.blobs, dataset.blobId);
    if (state === 'pending') {
      if (result.status === PASSED) result = pending('reading', 'reading dataset manifests');
      continue;
    }
    if (result.status === FAILED) continue;
    if (state === 'error') {
      result = failed('unreadable', `${label}: cannot read its manifest: ${run.blobs[dataset.blobId].error}`);
      continue;
    }
    const problem = manifestProblem(run.blobs[dataset.blobId], dataset);
    if (problem) result = failed(problem.code, `${label}: ${problem.text}`);
  }
  run.manifests = result;
  return result;
}

/** Every shard (a raw dataset is its one shard) re-downloaded and hashed while streaming. */
function datasetsShards(run) {
  const blocked = dataBlocked(run);
  if (blocked) return blocked;
  if (run.manifests.status === PENDING) return pending('waiting', 'waiting for the manifests');
  if (run.manifests.status !== PASSED) return notChecked('manifests-failed', 'the manifests did not check out');
  let result = null;
  let total = 0;
  let waiting = 0;
  for (const dataset of run.facts.datasets) {
    const label = `dataset ${dataset.index + 1}`;
    const list =
      dataset.kind === 'manifest' ? dataset.manifest.shards : [{ blobId: dataset.blobId, sha256: dataset.digest, size: null, path: `(${dataset.kind})` }];
    for (let index = 0; index < list.length; index++) {
      const shard = list[index];
      total += 1;
      const blob = Object.hasOwn(run.blobs, shard.blobId) ? run.blobs[shard.blobId] : undefined;
      if (blob === undefined) {
        waiting += 1;
        run.need(shard.blobId, false, shard.size ?? Infinity, `${label} shard ${index + 1}`);
        continue;
      }
      if (result !== null) continue;
      // The common case, kept short: a manifest may list 100,000 shards.
      if (blob.error === undefined && blob.digest === shard.sha256 && (shard.size === null || blob.size === shard.size)) continue;
      const where = `${label}, shard ${index + 1} (${shard.path})`;
      if (blob.error !== undefined) result = failed('unreadable', `${where}: cannot read it: ${blob.error}`);
      else if (blob.digest !== shard.sha256) result = failed('mismatch', `${where}: its bytes hash to ${blob.digest}, the manifest says ${shard.sha256}`);
      else result = failed('size-mismatch', `${where}: ${blob.size} bytes, the manifest says ${shard.size}`);
    }
  }
  if (result !== null) return result;
  if (waiting > 0) return pending('reading', `${total - waiting} of ${total} shards checked`);
  return passed('match', `all ${total} shard${total === 1 ? '' : 's'} match their manifests`);
}

/** Why the data checks cannot run (not asked for, nothing to locate the data by). */
function dataBlocked(run) {
  if (!run.options.deep) return notChecked('not-requested', 'not requested (Verify data, or okai verify --deep)');
  if (run.facts.record === null) return notChecked('no-record', 'no record');
  if (!run.matches) return notChecked('no-attestation', 'needs the recorded attestation, matching the record, to locate the data');
  return null;
}

function imageBytes(run) {
  const { record, image, imageManifest: manifest } = run.facts;
  if (!(run.options.deep && run.options.image)) return notChecked('not-requested', 'not requested (okai verify --deep --image)');
  if (record === null) return notChecked('no-record', 'no record');
  if (record.imageDigest === ZERO_DIGEST || !image) return notChecked('no-image', 'no registered image');
  if (manifest.state === 'pending') return pending('reading-manifest', 'reading the image manifest');
  if (manifest.state === 'error') return failed('manifest-unusable', `cannot use the image manifest: ${manifest.error}`);
  if (!manifest.consistent) return failed('manifest-inconsistent', 'the image manifest does not describe the registered image');
  if (manifest.blobId === null) return failed('no-quilt-id', 'the image manifest gives no quilt ID for the image');
  // okai image publish stores the image as the file `fileName` of a one-file quilt:
  // the manifest's blob ID is the quilt's, and the image bytes are that file.
  const key = quiltFileKey(manifest.blobId, manifest.fileName);
  run.need(key, false, manifest.size, 'image');
  const state = blobState(run.blobs, key);
  if (state === 'pending') return pending('reading', 'downloading the image');
  const blob = run.blobs[key];
  if (state === 'error') return failed('unreadable', `cannot read the image: ${blob.error}`);
  if (blob.digest !== record.imageDigest) return failed('mismatch', `the image bytes hash to ${blob.digest}, the registry says ${record.imageDigest}`);
  return passed('matches', 'the image bytes are the registered ones');
}

function reproduce(run) {
  const reproduced = run.inputs.reproducedDigest;
  if (!run.options.reproduce) return notChecked('not-requested', 'not requested (okai verify --reproduce, CLI only)');
  if (run.facts.record === null) return notChecked('no-record', 'no record');
  if (reproduced === undefined) return pending('running', 're-training');
  if (reproduced !== run.facts.modelDigest) return failed('mismatch', `re-training produced ${reproduced}`);
  return passed('reproduced', 're-training produced the same bytes');
}

/** Informational: listed, never failed. */
function witnesses(run) {
  if (run.facts.record === null) return notChecked('no-record', 'no record');
  const count = run.facts.witnesses.length;
  if (count === 0) return passed('none', 'nobody has recorded a reproduction yet');
  return passed('listed', `${count} account${count === 1 ? '' : 's'} recorded a bit-for-bit reproduction`);
}

/** One rule per check, in the report's order: the list reads as the specification. */
const RULES = [
  ['model.digest', modelDigest],
  ['record.exists', recordExists],
  ['attestation.digest', attestationDigest],
  ['attestation.statement', attestationStatement],
  ['attestation.matches-record', attestationMatchesRecord],
  ['image.registered', imageRegistered],
  ['datasets.manifests', datasetsManifests],
  ['datasets.shards', datasetsShards],
  ['image.bytes', imageBytes],
  ['reproduce', reproduce],
  ['witnesses', witnesses],
];
if (RULES.some(([id], i) => id !== CHECK_IDS[i])) throw new Error('RULES must follow CHECK_IDS');

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
    return { code: 'job-mismatch', text: `the attestation's job hashes to ${attested.jobDigest}, the record says ${record.jobDigest}` };
  }
  const want = record.datasetManifestDigests;
  const got = attested.datasets.map((d) => d.digest);
  if (got.length !== want.length) return { code: 'dataset-count', text: `the attestation names ${got.length} datasets, the record ${want.length}` };
  for (let i = 0; i < want.length; i++) {
    if (got[i] !== want[i]) return { code: 'dataset-mismatch', text: `dataset ${i + 1}: the attestation names ${got[i]}, the record ${want[i]}` };
  }
  if (attested.imageDigest !== record.imageDigest) {
    return { code: 'image-mismatch', text: `the attestation names image ${attested.imageDigest}, the record ${record.imageDigest}` };
  }
  return null;
}

// The page evaluates once per round of reads, each time with the same blob objects:
// a manifest is parsed, hashed and read once (okai.verify.rules caches the same way).
const manifestReads = new WeakMap();

/** Why a dataset manifest's bytes are not the recorded manifest (null: they are). */
function manifestProblem(blob, dataset) {
  const cached = manifestReads.get(blob);
  if (cached?.digest === dataset.digest) return cached.result(dataset);
  const result = readManifest(blob, dataset);
  manifestReads.set(blob, { digest: dataset.digest, result: result.problem ? () => result.problem : (d) => ((d.manifest = result.manifest), null) });
  return result.problem ?? ((dataset.manifest = result.manifest), null);
}

function readManifest(blob, dataset) {
  const problem = readManifestProblem(blob, dataset);
  return problem ? { problem } : { manifest: dataset.manifest };
}

function readManifestProblem(blob, dataset) {
  const parsed = parseJsonBlob(blob);
  if (parsed.problem) return { code: parsed.problem.code, text: `its manifest is ${parsed.problem.text}` };
  let canonical;
  try {
    canonical = canonicalJson(parsed.value);
  } catch (error) {
    return { code: 'no-canonical-form', text: `its manifest has no canonical form: ${error.message}` };
  }
  const digest = digestOfText(canonical);
  if (digest !== dataset.digest) return { code: 'mismatch', text: `its manifest hashes to ${digest}, the record says ${dataset.digest}` };
  const read = datasetShards(parsed.value);
  if (read.error) return { code: 'malformed', text: `its manifest: ${read.error}` };
  dataset.manifest = read;
  return null;
}

const IMAGE_KEYS = ['schema', 'fileName', 'format', 'variant', 'size', 'sha256', 'blobId', 'nixos', 'python'];
const NIXOS_KEYS = ['systemToplevel', 'nixpkgsRevision', 'flakeRevision'];
const STORE_PATH = /^\/nix\/store\/[0-9a-z]{32}-[^/]+$/;
const REVISION = /^[0-9a-f]{40}$/;

const PYTHON_KEYS = ['version', 'packages', 'extraPackages'];
const PYTHON_PACKAGE_KEYS = ['name', 'version', 'sha256'];
const PYTHON_PACKAGE_NAME = /^[a-z0-9]+(-[a-z0-9]+)*$/;
const MAX_PYTHON_PACKAGES = 10000;
const isShortText = (value, most) => typeof value === 'string' && value.length > 0 && [...value].length <= most;

/** Why the image's Python packages (okai.manifest.ImagePython; absent in older manifests) are malformed, or null. */
function imagePythonProblem(python) {
  if (python === undefined || python === null) return null;
  if (!hasOnly(python, PYTHON_KEYS)) return 'unknown fields in python';
  if (!isShortText(python.version, 100)) return 'a bad python.version';
  const { packages } = python;
  if (!Array.isArray(packages) || packages.length < 1 || packages.length > MAX_PYTHON_PACKAGES) return 'a bad python.packages';
  const names = new Set();
  for (const entry of packages) {
    if (!hasOnly(entry, PYTHON_PACKAGE_KEYS)) return 'unknown fields in python.packages';
    if (typeof entry.name !== 'string' || entry.name.length > 200 || !PYTHON_PACKAGE_NAME.test(entry.name)) return 'a bad python package name';
    if (!isShortText(entry.version, 100)) return 'a bad python package version';
    if (!isDocumentDigest(entry.sha256)) return 'a bad python package sha256';
    if (names.has(entry.name)) return 'a python package listed twice';
    names.add(entry.name);
  }
  const extras = python.extraPackages === undefined ? [] : python.extraPackages;
  if (!Array.isArray(extras) || extras.length > MAX_PYTHON_PACKAGES) return 'a bad python.extraPackages';
  if (!extras.every((name) => typeof name === 'string' && names.has(name))) return 'python.extraPackages not among its packages';
  return null;
}

/** Why an okai.image/v1 document is malformed (okai.manifest.ImageManifest), or null. */
export function imageManifestProblem(doc) {
  if (!isObject(doc) || doc.schema !== 'okai.image/v1') return 'not an okai.image/v1 document';
  if (!hasOnly(doc, IMAGE_KEYS) || !hasOnly(doc.nixos, NIXOS_KEYS)) return 'unknown fields';
  const name = doc.fileName;
  if (typeof name !== 'string' || [...name].length < 1 || [...name].length > 255) return 'no file name, or one over 255 characters';
  if (!['qcow2', 'raw'].includes(doc.format) || !['qemu', 'raw', 'qemu-efi', 'raw-efi'].includes(doc.variant)) return 'an unknown format or variant';
  if (!Number.isInteger(doc.size) || doc.size < 0) return 'a bad size';
  if (!isDocumentDigest(doc.sha256)) return 'a bad sha256';
  if (doc.blobId !== undefined && doc.blobId !== null && !isBlobIdText(doc.blobId)) return 'a bad blobId';
  const { systemToplevel, nixpkgsRevision, flakeRevision } = doc.nixos;
  if (typeof systemToplevel !== 'string' || !STORE_PATH.test(systemToplevel)) return 'a bad nixos.systemToplevel';
  if (typeof nixpkgsRevision !== 'string' || !REVISION.test(nixpkgsRevision)) return 'a bad nixos.nixpkgsRevision';
  if (typeof flakeRevision !== 'string' || flakeRevision.length === 0) return 'a bad nixos.flakeRevision';
  return imagePythonProblem(doc.python);
}

/** What the image manifest says, and whether it agrees with the registry (display only). */
function imageManifest(blobs, image, record) {
  const state = blobState(blobs, image.manifestBlobId);
  if (state !== 'ok') return { state, error: blobs[image.manifestBlobId]?.error };
  const served = blobs[image.manifestBlobId];
  if (served.digest !== image.manifestSha256) {
    const by = served.source ? ` served by ${served.source}` : '';
    return {
      state: 'error',
      forged: true,
      error: `the image manifest${by} hashes to ${served.digest}, but the image claim of ${image.registrant} says ${image.manifestSha256}`,
    };
  }
  const parsed = parseJsonBlob(served);
  if (parsed.problem) return { state: 'error', error: `the image manifest is ${parsed.problem.text}` };
  const doc = parsed.value;
  const problem = imageManifestProblem(doc);
  if (problem) return { state: 'error', error: `the image manifest has ${problem}` };
  return {
    state: 'ok',
    consistent: doc.sha256 === record.imageDigest && digestOfText(doc.nixos.systemToplevel) === image.systemToplevel,
    fileName: doc.fileName,
    format: doc.format,
    size: doc.size,
    blobId: doc.blobId ?? null,
    systemToplevel: doc.nixos.systemToplevel,
    nixpkgsRevision: doc.nixos.nixpkgsRevision,
    flakeRevision: doc.nixos.flakeRevision,
    python: doc.python ?? null,
  };
}

const SHARD_KEYS = ['path', 'offset', 'size', 'sha256', 'blobId', 'mediaType', 'firstSample'];
const FILE_KEYS = ['path', 'size', 'sha256', 'mediaType', 'format', 'samples'];
/** okai.manifest.DataFormat: how a dataset file holds samples. */
const DATA_FORMATS = ['safetensors', 'jsonl', 'text', 'parquet', 'webdataset', 'file'];
const isCount = (value) => Number.isInteger(value) && value >= 0;

function hasOnly(value, keys) {
  return isObject(value) && Object.keys(value).every((key) => keys.includes(key));
}

function entryProblem(entry, keys) {
  if (!hasOnly(entry, keys)) return 'has unknown fields';
  if (!isSafePath(entry.path)) return 'has an unsafe path';
  if (!Number.isInteger(entry.size) || entry.size < 0) return 'has a bad size';
  if (!isDocumentDigest(entry.sha256)) return 'has a bad sha256';
  if (entry.mediaType !== undefined && typeof entry.mediaType !== 'string') return 'has a bad mediaType';
  return null;
}

/** A file's format and sample count: both or neither (null counts as absent). */
function fileFormatProblem(file) {
  const format = file.format ?? null;
  const samples = file.samples ?? null;
  if (format !== null && !DATA_FORMATS.includes(format)) return 'has a bad format';
  if (samples !== null && !isCount(samples)) return 'has a bad samples count';
  if ((format === null) !== (samples === null)) return 'has a format or a sample count, not both';
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
    const problem = entryProblem(file, FILE_KEYS) ?? fileFormatProblem(file);
    if (problem) return { error: `file ${index + 1} ${problem}` };
  }
  const byPath = new Map();
  for (const [index, shard] of doc.shards.entries()) {
    const problem = entryProblem(shard, SHARD_KEYS) ?? (isBlobIdText(shard.blobId) ? null : 'has a bad blobId') ?? (Number.isInteger(shard.offset) && shard.offset >= 0 ? null : 'has a bad offset') ?? (shard.firstSample == null || isCount(shard.firstSample) ? null : 'has a bad firstSample');
    if (problem) return { error: `shard ${index + 1} ${problem}` };
    if (!byPath.has(shard.path)) byPath.set(shard.path, []);
    byPath.get(shard.path).push(shard);
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
