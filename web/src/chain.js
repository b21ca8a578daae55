// Registry reads over JSON-RPC: view calls only (public Flare RPCs cap eth_getLogs at 30
// blocks, so nothing here scans logs). Under a trust policy a verification costs eth_chainId,
// the registry's code, a page of claimants and one getProvenance per trusted trainer.
import { BaseError, ContractFunctionRevertedError, createClient, hexToBytes, http } from 'viem';
import { getChainId, getCode, readContract } from 'viem/actions';
import abi, { codeSha256 } from 'virtual:okai-registry-abi';
import { ZERO_DIGEST, blobIdFromBytes32, digestFromBytes32, digestOfBytes, digestToBytes32 } from './encoding.js';

const ZERO_ADDRESS = '0x' + '0'.repeat(40);
const ZERO_BYTES32 = '0x' + '0'.repeat(64);

export class ChainReadError extends Error {}

export function registryClient(rpcUrl) {
  // A bare client and the two actions used: the public-actions bundle would pull in
  // signature recovery and much more that a verifier never calls.
  return createClient({
    transport: http(rpcUrl, {
      retryCount: 2,
      timeout: 15_000,
      fetchOptions: { credentials: 'omit', referrerPolicy: 'no-referrer' },
    }),
  });
}

function explain(error) {
  return error instanceof BaseError ? error.shortMessage : String(error?.message ?? error);
}

/** Whether `address` holds exactly this okai's registry code (the committed artifact's). */
export async function hasRegistryCode(client, address) {
  try {
    const code = (await getCode(client, { address })) ?? '0x';
    return digestOfBytes(hexToBytes(code)) === codeSha256;
  } catch (error) {
    throw new ChainReadError(`the RPC endpoint did not answer: ${explain(error)}`);
  }
}

/** The chain ID the RPC endpoint reports. */
export async function chainId(client) {
  try {
    return await getChainId(client);
  } catch (error) {
    throw new ChainReadError(`the RPC endpoint did not answer: ${explain(error)}`);
  }
}

const SHOWN = 10n; // claims, publishers and witnesses listed per page when no policy names them

function isNotRecorded(error) {
  const revert = error instanceof BaseError ? error.walk((e) => e instanceof ContractFunctionRevertedError) : null;
  return revert?.data?.errorName === 'ProvenanceRegistryModelNotRecorded';
}

async function call(client, address, functionName, args) {
  try {
    return await readContract(client, { address, abi, functionName, args });
  } catch (error) {
    if (isNotRecorded(error)) return null;
    throw new ChainReadError(`the registry call failed: ${explain(error)}`);
  }
}

function recordOf(model) {
  return {
    imageDigest: digestFromBytes32(model.imageDigest),
    datasetManifestDigests: model.datasetManifestDigests.map(digestFromBytes32),
    jobDigest: digestFromBytes32(model.jobDigest),
    attestationDigest: digestFromBytes32(model.attestationDigest),
    attestationBlobId: blobIdFromBytes32(model.attestationBlobId),
    submitter: model.submitter,
    recordedAt: Number(model.recordedAt),
  };
}

function imageOf(image) {
  return {
    systemToplevel: digestFromBytes32(image.systemToplevel),
    manifestBlobId: blobIdFromBytes32(image.manifestBlobId),
    manifestSha256: digestFromBytes32(image.manifestSha256),
    registrant: image.publisher,
    registeredAt: Number(image.registeredAt),
  };
}

/**
 * The claim on `digest` to judge under `policy` (policy.js), in a bounded number of calls
 * whatever others wrote: { record, image, witnesses, context }. `record` is null when no
 * trusted trainer (or, unpinned, nobody) recorded it; `context` lists the claimants.
 * Pinned: the first trusted trainer's claim, with the trusted publishers' image claims and
 * the trusted witnesses that witnessed it. Unpinned: the oldest claim shown.
 */
export async function readProvenance(client, address, digest, policy) {
  const key = digestToBytes32(digest);
  const [submitters, total] = await call(client, address, 'modelSubmitters', [key, ZERO_ADDRESS, SHOWN]);
  const context = { submitters: [...submitters], submitterTotal: Number(total), imagePublishers: [], witnessCount: 0 };
  const pinned = policy.trainers.length > 0;
  const candidates = pinned ? policy.trainers : submitters.slice(-1);
  for (const submitter of candidates) {
    let result = await call(client, address, 'getProvenance', [key, submitter, policy.publishers, policy.witnesses]);
    if (result === null) continue;
    let witnesses = policy.witnesses.filter((_, index) => result[2][index]);
    if (!pinned) {
      const model = result[0];
      if (model.imageDigest !== ZERO_BYTES32) {
        const [publishers] = await call(client, address, 'imagePublishers', [model.imageDigest, 0n, SHOWN]);
        result = await call(client, address, 'getProvenance', [key, submitter, publishers, []]);
      }
      witnesses = [...(await call(client, address, 'witnesses', [key, submitter, 0n, SHOWN]))[0]];
    }
    const [model, images, , count] = result;
    const record = recordOf(model);
    const claims = images.filter((image) => image.publisher !== ZERO_ADDRESS).map(imageOf);
    context.imagePublishers = claims.map((image) => image.registrant);
    context.witnessCount = Number(count);
    const image = record.imageDigest === ZERO_DIGEST ? null : (claims[0] ?? null);
    return { record, image, imageClaims: claims, witnesses, context };
  }
  return { record: null, image: null, imageClaims: [], witnesses: [], context };
}
