// Registry reads over JSON-RPC: view calls only (public Flare RPCs cap eth_getLogs at 30
// blocks, so nothing here scans logs). Two calls per verification: eth_chainId, getProvenance.
import { BaseError, ContractFunctionRevertedError, createClient, http } from 'viem';
import { getChainId, readContract } from 'viem/actions';
import abi from 'virtual:okai-registry-abi';
import { ZERO_DIGEST, blobIdFromBytes32, digestFromBytes32, digestToBytes32 } from './encoding.js';

const ZERO_ADDRESS = '0x' + '0'.repeat(40);

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

/** The chain ID the RPC endpoint reports. */
export async function chainId(client) {
  try {
    return await getChainId(client);
  } catch (error) {
    throw new ChainReadError(`the RPC endpoint did not answer: ${explain(error)}`);
  }
}

/**
 * The provenance of `digest` from the registry at `address`:
 * { record, image, witnesses }, with record null when the model is not recorded and image
 * null when the record's image is not registered (or is the zero digest).
 */
export async function readProvenance(client, address, digest) {
  let result;
  try {
    result = await readContract(client, {
      address,
      abi,
      functionName: 'getProvenance',
      args: [digestToBytes32(digest)],
    });
  } catch (error) {
    const revert = error instanceof BaseError ? error.walk((e) => e instanceof ContractFunctionRevertedError) : null;
    if (revert?.data?.errorName === 'ProvenanceRegistryModelNotRecorded') {
      return { record: null, image: null, witnesses: [] };
    }
    throw new ChainReadError(`the registry call failed: ${explain(error)}`);
  }
  const [model, image, witnesses] = result;
  const record = {
    imageDigest: digestFromBytes32(model.imageDigest),
    datasetManifestDigests: model.datasetManifestDigests.map(digestFromBytes32),
    jobDigest: digestFromBytes32(model.jobDigest),
    attestationDigest: digestFromBytes32(model.attestationDigest),
    attestationBlobId: blobIdFromBytes32(model.attestationBlobId),
    submitter: model.submitter,
    recordedAt: Number(model.recordedAt),
  };
  const registered = image.registrant !== ZERO_ADDRESS && record.imageDigest !== ZERO_DIGEST;
  return {
    record,
    image: registered
      ? {
          systemToplevel: digestFromBytes32(image.systemToplevel),
          manifestBlobId: blobIdFromBytes32(image.manifestBlobId),
          registrant: image.registrant,
          registeredAt: Number(image.registeredAt),
        }
      : null,
    witnesses: [...witnesses],
  };
}
