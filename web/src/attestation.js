// Reading the run attestation (src/okai/provenance/attestation.py writes it): an in-toto
// Statement v1 whose SLSA Provenance v1 predicate names the job, image, datasets and the
// system the node ran. The structure is checked as strictly as the Python reader does for
// everything a verdict or the lineage view depends on; the result is plain values.
import { PREFIX, ZERO_DIGEST, canonicalJson, digestOfText as digestOf, isBlobId, parseDigest } from './encoding.js';

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

// RFC 3339 date-time with a zone (pydantic's AwareDatetime), as milliseconds; else null.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i;
function moment(text) {
  if (typeof text !== 'string' || !DATE_TIME.test(text)) return null;
  const value = Date.parse(text.replace(' ', 'T'));
  return Number.isNaN(value) ? null : value;
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
  if (entry.digest === undefined) return null;
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
    need(entry.uri === undefined || (typeof entry.uri === 'string' && length(entry.uri) <= 500), `${where}.${entry.name}`, 'uri is not text of at most 500 characters');
    need(entry.uri !== undefined || entry.digest !== undefined || (isObject(entry.annotations) && Object.keys(entry.annotations).length > 0), `${where}.${entry.name}`, 'needs a uri, a digest or annotations');
    need(!byName.has(entry.name), where, `'${entry.name}' appears twice`);
    need(entry.annotations === undefined || isObject(entry.annotations), `${where}.${entry.name}`, 'annotations is not an object');
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
  const locator = ref[JOB_LOCATOR[kind]];
  need(kind === 'quiltPatch' ? QUILT_PATCH_ID.test(locator) : isBlobId(locator), where, 'malformed locator');
  const expected = ref.sha256 === undefined ? null : parseDigest(ref.sha256);
  need(ref.sha256 === undefined || expected !== null, where, 'malformed sha256');
  if (kind === 'manifest') need(expected !== null, where, 'a manifest reference needs sha256');
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
  try {
    return read(doc, modelDigest);
  } catch (error) {
    if (error instanceof Invalid) return { error: `the attestation is malformed: ${error.message}` };
    throw error;
  }
}

function read(doc, modelDigest) {
  onlyKeys(doc, ['_type', 'subject', 'predicateType', 'predicate'], 'statement');
  need(doc._type === STATEMENT_TYPE, '_type', `is not ${STATEMENT_TYPE}`);
  need(doc.predicateType === PREDICATE_TYPE, 'predicateType', `is not ${PREDICATE_TYPE}`);
  need(Array.isArray(doc.subject) && doc.subject.length === 1, 'subject', 'must name exactly one artifact');
  const subject = doc.subject[0];
  onlyKeys(subject, ['name', 'digest'], 'subject');
  need(typeof subject.name === 'string' && length(subject.name) >= 1 && length(subject.name) <= 4096, 'subject', 'has no name, or one over 4096 characters');
  const subjectDigest = descriptorDigest(subject, 'subject');
  need(subjectDigest !== null, 'subject', 'has no sha256 digest');
  if (subjectDigest !== modelDigest) {
    throw new Invalid(`subject: it is about ${subjectDigest}, not this model`);
  }

  const predicate = doc.predicate;
  onlyKeys(predicate, ['buildDefinition', 'runDetails'], 'predicate');
  const build = predicate.buildDefinition;
  onlyKeys(build, ['buildType', 'externalParameters', 'internalParameters', 'resolvedDependencies'], 'predicate.buildDefinition');
  need(build.buildType === BUILD_TYPE, 'predicate.buildDefinition.buildType', `is not ${BUILD_TYPE}`);
  onlyKeys(build.externalParameters, ['job'], 'predicate.buildDefinition.externalParameters');
  const job = build.externalParameters.job;
  need(isObject(job) && job.schema === 'okai.job/v1', 'job.schema', 'is not okai.job/v1');
  need(typeof job.name === 'string' && length(job.name) >= 1 && length(job.name) <= 200, 'job.name', 'missing or over 200 characters');
  need(Array.isArray(job.datasets) && job.datasets.length > 0, 'job.datasets', 'missing or empty');
  const nodes = job.nodes ?? 1;
  const procs = job.procsPerNode ?? 1;
  need(Number.isSafeInteger(nodes) && nodes >= 1 && Number.isSafeInteger(procs) && procs >= 1, 'job', 'nodes and procsPerNode must be positive integers');
  const entrypoint = isObject(job.model) && job.model.entrypointBlobId !== undefined ? parseDigest(job.model.sha256 ?? '') : null;
  need(isObject(job.model) && (typeof job.model.builtin === 'string' || entrypoint !== null), 'job.model', 'needs a builtin name or an entrypoint with its sha256');
  const internal = build.internalParameters;
  onlyKeys(internal, ['libraries', 'worldSize', 'nodes'], 'predicate.buildDefinition.internalParameters');
  need(isObject(internal.libraries) && Object.values(internal.libraries).every((v) => typeof v === 'string'), 'internalParameters.libraries', 'not a map of versions');
  need(internal.nodes === nodes && internal.worldSize === nodes * procs, 'predicate.buildDefinition.internalParameters', 'differs from the job');
  let jobDigest;
  try {
    jobDigest = digestOf(canonicalJson(job));
  } catch (error) {
    throw new Invalid(`job: no canonical form (${error.message})`);
  }
  const jobDatasets = job.datasets.map(jobDataset);

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
      manifestBlobId: entry.uri?.startsWith('walrus://') && isBlobId(entry.uri.slice(9)) ? entry.uri.slice(9) : null,
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
  need(finished >= started, 'predicate.runDetails.metadata', 'finishedOn is before startedOn');
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
