// Reading the run attestation (src/okai/provenance/attestation.py writes it): an in-toto
// Statement v1 whose SLSA Provenance v1 predicate names the job, image, datasets and the
// system the node ran. The structure is checked as strictly as the Python reader does for
// everything a verdict or the lineage view depends on; the result is plain values.
import { PREFIX, ZERO_DIGEST, canonicalJson, digestOfText as digestOf, isBlobIdText, isDocumentDigest, isSafePath } from './encoding.js';

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE = 'https://slsa.dev/provenance/v1';
export const BUILD_TYPE = 'https://okai.dev/provenance/training/v1';
export const UNREGISTERED_HOST = 'unregistered host';
const BUILDER_ID = /^https:\/\/okai\.dev\/builders\/[a-z][a-z0-9-]{0,31}\/v1$/;
const STORE_PATH = /^\/nix\/store\/[0-9a-z]{32}-[^/]+$/;
const HEX64 = /^[0-9a-f]{64}$/;
const QUILT_PATCH_ID = /^[A-Za-z0-9_-]{1,128}$/;
const SCHEMES = { manifest: 'walrus://', blob: 'walrus://', quiltPatch: 'walrus-quilt-patch://' };
const JOB_LOCATOR = { manifest: 'manifestBlobId', blob: 'blobId', quiltPatch: 'quiltPatchId' };

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);

class Invalid extends Error {}

// An RFC 3339 time with a zone, as okai.provenance.attestation.MOMENT_PATTERN reads it:
// [seconds since 1970 UTC, microseconds], or null. Date.parse is not used: it
// accepts February 30th and 24:00.
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:Z|([+-])(\d{2}):(\d{2}))$/;
const leap = (y) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
function moment(text) {
  const m = typeof text === 'string' ? DATE_TIME.exec(text) : null;
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  const monthDays = mo === 2 && leap(y) ? 29 : DAYS[mo - 1];
  const [oh, om] = m[8] ? [Number(m[9]), Number(m[10])] : [0, 0];
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > monthDays || h > 23 || mi > 59 || s > 59 || oh > 23 || om > 59) return null;
  const days = daysFromCivil(y, mo, d);
  const offset = (m[8] === '-' ? -1 : 1) * (oh * 60 + om) * 60;
  return [days * 86400 + h * 3600 + mi * 60 + s - offset, Number((m[7] ?? '').padEnd(6, '0'))];
}
/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(year, month, day) {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  return era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
}
const before = (a, b) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

const isInteger = (value) => Number.isInteger(value); // 5.0 is 5: JSON numbers are doubles
const inRange = (value, low, high = Infinity) => isInteger(value) && value >= low && value <= high;
const absent = (value) => value === undefined || value === null; // pydantic's Optional

const JOB_KEYS = ['schema', 'name', 'model', 'hyperparameters', 'seed', 'deterministic', 'datasets', 'nodes', 'procsPerNode', 'checkpointEvery', 'outputFormat', 'sync'];
const ENTRYPOINT_KEYS = ['entrypointBlobId', 'sha256', 'kind', 'function', 'module'];
const MODULE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const SYNC_KEYS = { ddp: ['strategy'], diloco: ['strategy', 'innerSteps', 'outerLr', 'outerMomentum', 'compression'] };
const isNumber = (value) => typeof value === 'number' && Number.isFinite(value);
const REF_KEYS = { manifest: ['manifestBlobId', 'sha256'], blob: ['blobId', 'sha256', 'path'], quiltPatch: ['quiltPatchId', 'sha256', 'path'] };
const FUNCTION_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The okai.job/v1 document as okai.manifest.JobSpec reads it (fields, types, ranges). */
function checkJob(job) {
  onlyKeys(job, JOB_KEYS, 'job');
  need(job.schema === 'okai.job/v1', 'job.schema', 'is not okai.job/v1');
  need(typeof job.name === 'string' && length(job.name) >= 1 && length(job.name) <= 200, 'job.name', 'missing or over 200 characters');
  const model = job.model;
  need(isObject(model), 'job.model', 'not an object');
  if (model.entrypointBlobId === undefined) {
    onlyKeys(model, ['builtin'], 'job.model');
    need(typeof model.builtin === 'string' && model.builtin.length > 0, 'job.model.builtin', 'not a name');
  } else {
    onlyKeys(model, ENTRYPOINT_KEYS, 'job.model');
    need(isBlobIdText(model.entrypointBlobId) && isDocumentDigest(model.sha256), 'job.model', 'needs an entrypoint blob ID and its sha256');
    need(model.kind === undefined || model.kind === 'file' || model.kind === 'package', 'job.model.kind', 'is not file or package');
    need(model.function === undefined || (typeof model.function === 'string' && FUNCTION_NAME.test(model.function)), 'job.model.function', 'is not a name');
    need(absent(model.module) || (typeof model.module === 'string' && length(model.module) <= 200 && MODULE_NAME.test(model.module)), 'job.model.module', 'is not a module name');
    need((model.kind === 'package') === !absent(model.module), 'job.model.module', 'a package entry point names its module; a file entry point does not');
  }
  const hyper = job.hyperparameters;
  need(hyper === undefined || (isObject(hyper) && Object.values(hyper).every((v) => ['number', 'string', 'boolean'].includes(typeof v))), 'job.hyperparameters', 'not a map of numbers, strings and booleans');
  need(job.seed === undefined || inRange(job.seed, 0, 2 ** 53 - 1), 'job.seed', 'not an integer of at least 0');
  need(job.deterministic === undefined || typeof job.deterministic === 'boolean', 'job.deterministic', 'not a boolean');
  need(Array.isArray(job.datasets) && job.datasets.length > 0, 'job.datasets', 'missing or empty');
  need(job.nodes === undefined || inRange(job.nodes, 1, 1024), 'job.nodes', 'not an integer from 1 to 1024');
  need(job.procsPerNode === undefined || inRange(job.procsPerNode, 1, 256), 'job.procsPerNode', 'not an integer from 1 to 256');
  need(job.checkpointEvery === undefined || inRange(job.checkpointEvery, 0), 'job.checkpointEvery', 'not an integer of at least 0');
  need(job.outputFormat === undefined || job.outputFormat === 'safetensors', 'job.outputFormat', 'is not safetensors');
  checkSync(job.sync);
  return job.datasets.map(jobDataset);
}

/** okai.manifest's DdpSync | DilocoSync (null: DDP, the default). */
function checkSync(sync) {
  if (absent(sync)) return;
  need(isObject(sync) && Object.hasOwn(SYNC_KEYS, sync.strategy), 'job.sync.strategy', 'is not ddp or diloco');
  onlyKeys(sync, SYNC_KEYS[sync.strategy], 'job.sync');
  if (sync.strategy !== 'diloco') return;
  need(sync.innerSteps === undefined || inRange(sync.innerSteps, 1, 1_000_000), 'job.sync.innerSteps', 'not an integer from 1 to 1000000');
  need(sync.outerLr === undefined || (isNumber(sync.outerLr) && sync.outerLr > 0 && sync.outerLr <= 10), 'job.sync.outerLr', 'not a number above 0 and at most 10');
  need(sync.outerMomentum === undefined || (isNumber(sync.outerMomentum) && sync.outerMomentum >= 0 && sync.outerMomentum < 1), 'job.sync.outerMomentum', 'not a number from 0 to below 1');
  need(sync.compression === undefined || ['none', 'fp16', 'bf16'].includes(sync.compression), 'job.sync.compression', 'is not none, fp16 or bf16');
}

function need(condition, where, problem) {
  if (!condition) throw new Invalid(`${where}: ${problem}`);
}

/** Unknown fields are refused, as the Python reader refuses them. */
function onlyKeys(value, allowed, where) {
  need(isObject(value), where, 'not an object');
  const unknown = Object.keys(value).filter((key) => !allowed.includes(key));
  need(unknown.length === 0, where, `unknown field '${unknown[0]}'`);
}

/** Length in code points, as Python counts it. */
const length = (text) => [...text].length;

/** The `sha256:` digest of a descriptor's `digest.sha256`, or null when absent. */
function descriptorDigest(entry, where) {
  if (absent(entry.digest)) return null;
  onlyKeys(entry.digest, ['sha256'], `${where}.digest`);
  need(typeof entry.digest.sha256 === 'string' && HEX64.test(entry.digest.sha256), where, 'digest.sha256 is not 64 lowercase hex');
  return PREFIX + entry.digest.sha256;
}

function descriptors(list, where) {
  need(Array.isArray(list), where, 'not a list');
  const byName = new Map();
  for (const entry of list) {
    onlyKeys(entry, ['name', 'uri', 'digest', 'annotations'], where);
    need(typeof entry.name === 'string' && length(entry.name) >= 1 && length(entry.name) <= 200, where, 'an entry has no name, or a name over 200 characters');
    need(absent(entry.uri) || (typeof entry.uri === 'string' && length(entry.uri) <= 500), `${where}.${entry.name}`, 'uri is not text of at most 500 characters');
    need(absent(entry.annotations) || isObject(entry.annotations), `${where}.${entry.name}`, 'annotations is not an object');
    need(!absent(entry.uri) || !absent(entry.digest) || Object.keys(entry.annotations ?? {}).length > 0, `${where}.${entry.name}`, 'needs a uri, a digest or annotations');
    need(!byName.has(entry.name), where, `'${entry.name}' appears twice`);
    byName.set(entry.name, { ...entry, sha256: descriptorDigest(entry, `${where}.${entry.name}`) });
  }
  return byName;
}

/** Which kind of reference a job dataset is, and its Walrus locator. */
function jobDataset(ref, index) {
  const where = `job.datasets.${index}`;
  need(isObject(ref), where, 'not an object');
  const kinds = Object.keys(JOB_LOCATOR).filter((kind) => ref[JOB_LOCATOR[kind]] !== undefined);
  need(kinds.length === 1, where, 'needs exactly one of manifestBlobId, blobId, quiltPatchId');
  const kind = kinds[0];
  onlyKeys(ref, REF_KEYS[kind], where);
  const locator = ref[JOB_LOCATOR[kind]];
  need(typeof locator === 'string' && (kind === 'quiltPatch' ? QUILT_PATCH_ID.test(locator) : isBlobIdText(locator)), where, 'malformed locator');
  const expected = absent(ref.sha256) ? null : ref.sha256;
  need(expected === null || isDocumentDigest(expected), where, 'malformed sha256');
  if (kind === 'manifest') need(expected !== null, where, 'a manifest reference needs sha256');
  need(ref.path === undefined || isSafePath(ref.path), where, 'has an unsafe path');
  return { kind, locator, expected };
}

/**
 * What a parsed statement attests, or { error } naming the first problem:
 * { modelFile, jobDigest, job, datasets: [{kind, locator, blobId, digest}], imageDigest,
 *   image: {systemToplevel, nixpkgsRevision, flakeRevision} | null, systemToplevel
 *   (the host identity: a store path, or null for an unregistered host), builderId,
 *   runId, startedOn, finishedOn, metrics, libraries }
 */
export function attestedInputs(doc, modelDigest) {
  let attested;
  try {
    attested = read(doc);
  } catch (error) {
    if (error instanceof Invalid) return { code: 'malformed', error: `the attestation is malformed: ${error.message}` };
    throw error;
  }
  // Only a well-formed statement is about anything (okai.verify.rules checks in this order).
  if (attested.subjectDigest !== modelDigest) {
    return { code: 'other-model', error: `subject: it is about ${attested.subjectDigest}, not this model` };
  }
  return attested;
}

function read(doc) {
  onlyKeys(doc, ['_type', 'subject', 'predicateType', 'predicate'], 'statement');
  need(doc._type === STATEMENT_TYPE, '_type', `is not ${STATEMENT_TYPE}`);
  need(doc.predicateType === PREDICATE_TYPE, 'predicateType', `is not ${PREDICATE_TYPE}`);
  need(Array.isArray(doc.subject) && doc.subject.length === 1, 'subject', 'must name exactly one artifact');
  const subject = doc.subject[0];
  onlyKeys(subject, ['name', 'digest'], 'subject');
  need(typeof subject.name === 'string' && length(subject.name) >= 1 && length(subject.name) <= 4096, 'subject', 'has no name, or one over 4096 characters');
  const subjectDigest = descriptorDigest(subject, 'subject');
  need(subjectDigest !== null, 'subject', 'has no sha256 digest');

  const predicate = doc.predicate;
  onlyKeys(predicate, ['buildDefinition', 'runDetails'], 'predicate');
  const build = predicate.buildDefinition;
  onlyKeys(build, ['buildType', 'externalParameters', 'internalParameters', 'resolvedDependencies'], 'predicate.buildDefinition');
  need(build.buildType === BUILD_TYPE, 'predicate.buildDefinition.buildType', `is not ${BUILD_TYPE}`);
  onlyKeys(build.externalParameters, ['job'], 'predicate.buildDefinition.externalParameters');
  const job = build.externalParameters.job;
  const internal = build.internalParameters;
  onlyKeys(internal, ['libraries', 'worldSize', 'nodes'], 'predicate.buildDefinition.internalParameters');
  need(isObject(internal.libraries) && Object.values(internal.libraries).every((v) => typeof v === 'string'), 'internalParameters.libraries', 'not a map of versions');
  need(inRange(internal.worldSize, 1) && inRange(internal.nodes, 1), 'predicate.buildDefinition.internalParameters', 'worldSize and nodes must be positive integers');
  const jobDatasets = checkJob(job);
  const nodes = job.nodes ?? 1;
  const procs = job.procsPerNode ?? 1;
  const entrypoint = job.model.entrypointBlobId === undefined ? null : job.model.sha256;
  need(internal.nodes === nodes && internal.worldSize === nodes * procs, 'predicate.buildDefinition.internalParameters', 'differs from the job');
  let jobDigest;
  try {
    jobDigest = digestOf(canonicalJson(job));
  } catch (error) {
    throw new Invalid(`job: no canonical form (${error.message})`);
  }

  const dependencies = descriptors(build.resolvedDependencies, 'predicate.buildDefinition.resolvedDependencies');
  const names = [...dependencies.keys()];
  const expected = [...(dependencies.has('image') ? ['image'] : []), ...jobDatasets.map((_, i) => `dataset:${i}`), 'code'];
  need(
    names.length === expected.length && names.every((name, i) => name === expected[i]),
    'predicate.buildDefinition.resolvedDependencies',
    `expected ${expected.join(', ')}`,
  );
  for (const [name, entry] of dependencies) {
    need(entry.sha256 !== null, `resolvedDependencies.${name}`, 'no digest');
  }
  need(entrypoint === null || dependencies.get('code').sha256 === entrypoint, 'resolvedDependencies.code', "digest differs from the job's entrypoint");
  const datasets = jobDatasets.map((ref, index) => {
    const entry = dependencies.get(`dataset:${index}`);
    const where = `resolvedDependencies.dataset:${index}`;
    const kind = entry.annotations?.ref;
    need(kind === ref.kind, where, `is a ${String(kind)} reference, the job's is a ${ref.kind}`);
    need(entry.uri === SCHEMES[kind] + ref.locator, where, 'its uri is not the job\'s locator');
    need(ref.expected === null || ref.expected === entry.sha256, where, 'its digest is not the one the job expects');
    return {
      kind,
      locator: ref.locator,
      // The aggregator path that reads it (relative to /v1/blobs/).
      blobId: kind === 'quiltPatch' ? `by-quilt-patch-id/${ref.locator}` : ref.locator,
      digest: entry.sha256,
    };
  });

  let image = null;
  if (dependencies.has('image')) {
    const entry = dependencies.get('image');
    const notes = entry.annotations ?? {};
    const text = (value) => (typeof value === 'string' ? value : null);
    if (notes.systemToplevel !== undefined) {
      need(typeof notes.systemToplevel === 'string' && notes.systemToplevelDigest === digestOf(notes.systemToplevel), 'resolvedDependencies.image', 'systemToplevelDigest does not match');
    }
    image = {
      manifestBlobId: entry.uri?.startsWith('walrus://') && isBlobIdText(entry.uri.slice(9)) ? entry.uri.slice(9) : null,
      systemToplevel: text(notes.systemToplevel),
      nixpkgsRevision: text(notes.nixpkgsRevision),
      flakeRevision: text(notes.flakeRevision),
    };
  }

  const run = predicate.runDetails;
  onlyKeys(run, ['builder', 'metadata', 'byproducts'], 'predicate.runDetails');
  onlyKeys(run.builder, ['id'], 'predicate.runDetails.builder');
  need(typeof run.builder.id === 'string' && BUILDER_ID.test(run.builder.id), 'predicate.runDetails.builder.id', 'is not an okai builder');
  const metadata = run.metadata;
  onlyKeys(metadata, ['invocationId', 'startedOn', 'finishedOn'], 'predicate.runDetails.metadata');
  need(typeof metadata.invocationId === 'string' && length(metadata.invocationId) >= 1 && length(metadata.invocationId) <= 128, 'metadata.invocationId', 'missing or over 128 characters');
  const started = moment(metadata.startedOn);
  const finished = moment(metadata.finishedOn);
  need(started !== null && finished !== null, 'predicate.runDetails.metadata', 'startedOn and finishedOn must be times with a zone');
  need(!before(finished, started), 'predicate.runDetails.metadata', 'finishedOn is before startedOn');
  const byproducts = descriptors(run.byproducts, 'predicate.runDetails.byproducts');
  need(byproducts.size === 2 && byproducts.has('host') && byproducts.has('metrics'), 'predicate.runDetails.byproducts', "expected exactly 'metrics' and 'host'");
  const host = byproducts.get('host');
  const identity = host.annotations?.identity;
  let systemToplevel = null;
  if (identity === UNREGISTERED_HOST) {
    need(host.sha256 === null, 'byproducts.host', 'an unregistered host has no digest');
  } else {
    need(typeof identity === 'string' && STORE_PATH.test(identity), 'byproducts.host', 'its identity is not a Nix store path');
    need(host.sha256 === digestOf(identity), 'byproducts.host', 'its digest is not that of its identity');
    systemToplevel = identity;
  }
  const metrics = byproducts.get('metrics').annotations ?? {};
  let metricsDigest = null;
  try {
    metricsDigest = digestOf(canonicalJson(metrics));
  } catch {
    // no canonical form: reported as a mismatch below
  }
  need(metricsDigest !== null && metricsDigest === byproducts.get('metrics').sha256, 'byproducts.metrics', 'its digest does not match');

  return {
    subjectDigest,
    modelFile: subject.name,
    jobDigest,
    job,
    datasets,
    imageDigest: dependencies.get('image')?.sha256 ?? ZERO_DIGEST,
    image,
    codeDigest: dependencies.get('code').sha256,
    systemToplevel,
    builderId: run.builder.id,
    runId: metadata.invocationId,
    startedOn: metadata.startedOn,
    finishedOn: metadata.finishedOn,
    metrics,
    libraries: internal.libraries,
  };
}
