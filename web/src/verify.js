// One verification: observe (hash the file, read the registry, read blobs), evaluate the
// rules, fetch what they still need, repeat. Everything observed goes through rules.js;
// nothing here decides a status.
import { PASSED, PENDING, evaluate } from './rules.js';
import { sha256File } from './hash.js';
import { readBlob } from './walrus.js';
import { chainId, hasRegistryCode, readProvenance, registryClient } from './chain.js';
import { applyPolicy } from './policy.js';

const PARALLEL_READS = 4;
const MAX_ROUNDS = 12;

export class Verification {
  /**
   * @param network  the resolved network (chainId, rpcUrl, aggregator, registryAddress)
   * @param source   { file } or { given: text }
   * @param onChange called with (result, progress) after every observation
   * @param policy   the trust policy (policy.js)
   */
  constructor(network, source, onChange, policy) {
    this.network = network;
    this.source = source;
    this.policy = policy;
    this.context = null;
    this.imageClaimsLeft = []; // image claims not judged yet (chooseImage)
    this.onChange = onChange;
    this.controller = new AbortController();
    this.inputs = { options: { deep: false }, network: { name: network.name, chainId: network.chainId }, blobs: {} };
    this.progress = { hash: null, data: null };
    this.result = this.judge();
  }

  /** The rules' evaluation, under the trust policy. */
  judge() {
    const evaluation = evaluate(this.inputs);
    this.imageStatus = evaluation.checks['image.registered'].status; // of the claim judged now
    if (this.imageClaimsLeft.length > 0 && this.imageStatus !== PASSED && this.imageStatus !== PENDING) {
      // Not final while another image claim may still pass (chooseImage).
      evaluation.checks = { ...evaluation.checks, 'image.registered': { status: PENDING, code: 'next-claim', reason: 'trying the next image claim' } };
    }
    const result = applyPolicy(evaluation, this.policy, this.context, this.inputs.options);
    if (this.codeProblem) {
      result.checks = { ...result.checks, 'record.exists': { status: 'failed', reason: this.codeProblem } };
      result.verdict = 'not verified';
    }
    return result;
  }

  abort() {
    this.controller.abort(new DOMException('replaced by a newer verification', 'AbortError'));
  }

  get aborted() {
    return this.controller.signal.aborted;
  }

  update() {
    if (this.aborted) return;
    this.result = this.judge();
    this.onChange(this.result, this.progress);
  }

  /** Report progress without re-evaluating, at most every 100 ms. */
  tick() {
    const now = performance.now();
    if (this.aborted || now - (this.lastTick ?? 0) < 100) return;
    this.lastTick = now;
    this.onChange(this.result, this.progress);
  }

  async start() {
    this.update();
    if (this.source.file) {
      const started = performance.now();
      try {
        const digest = await sha256File(this.source.file, {
          signal: this.controller.signal,
          onProgress: (done, total) => {
            this.progress.hash = { done, total, seconds: (performance.now() - started) / 1000 };
            this.update();
          },
        });
        this.inputs.model = { digest };
      } catch (error) {
        if (this.aborted) return;
        this.inputs.model = { error: error.message };
      }
    } else {
      this.inputs.model = { given: this.source.given };
    }
    this.update();
    if (this.result.facts.modelDigest === null) return;
    this.inputs.chain = await this.readChain(this.result.facts.modelDigest);
    if (this.inputs.chain.image) this.imageClaimsLeft = this.inputs.chain.imageClaims.slice(1);
    this.update();
    await this.settle();
    await this.chooseImage();
  }

  /**
   * Several image claims (trusted publishers', or anyone's when unpinned): judge the first
   * whose system is the one the node ran, as `okai verify` does, so no other claim decides
   * which one counts.
   */
  async chooseImage() {
    while (this.imageClaimsLeft.length > 0 && !this.aborted) {
      if (this.imageStatus === PASSED) break;
      const image = this.imageClaimsLeft.shift();
      this.inputs.chain = { ...this.inputs.chain, image };
      this.context = { ...this.context, imagePublishers: [image.registrant] };
      this.update();
      await this.settle();
    }
    this.imageClaimsLeft = [];
    this.update();
  }

  async readChain(digest) {
    const { rpcUrl, registryAddress } = this.network;
    if (!registryAddress) return { error: `no registry address is known for ${this.network.name}: set one under Settings` };
    try {
      const client = registryClient(rpcUrl);
      const id = await chainId(client);
      if (id !== this.network.chainId) return { chainId: id, record: null, image: null, witnesses: [] };
      if (!(await hasRegistryCode(client, registryAddress))) {
        this.codeProblem = `the code at ${registryAddress} on chain ${id} is not this okai's ProvenanceRegistry (record format 2): its answers prove nothing`;
        return { chainId: id, record: null, image: null, witnesses: [] };
      }
      const { context, ...answer } = await readProvenance(client, registryAddress, digest, this.policy);
      this.context = context;
      return { chainId: id, ...answer };
    } catch (error) {
      return { error: error.message };
    }
  }

  /** Turn on the data checks ("verify data") and fetch what they need. */
  async verifyData() {
    this.inputs.options = { ...this.inputs.options, deep: true };
    this.update();
    await this.settle();
  }

  /** Fetch whatever the rules ask for until they ask for nothing new. */
  async settle() {
    for (let round = 0; round < MAX_ROUNDS && !this.aborted; round++) {
      const needs = this.result.needs.filter((need) => this.inputs.blobs[need.blobId] === undefined);
      if (needs.length === 0) return;
      const data = needs.filter((need) => !need.keep);
      if (data.length > 0) {
        const known = data.every((need) => Number.isFinite(need.maxBytes));
        this.progress.data = {
          shards: 0,
          total: data.length,
          bytes: 0,
          totalBytes: known ? data.reduce((sum, need) => sum + need.maxBytes, 0) : null,
        };
      }
      await this.readAll(needs);
      this.update();
    }
  }

  async readAll(needs) {
    const queue = [...needs];
    const worker = async () => {
      while (queue.length > 0 && !this.aborted) {
        const need = queue.shift();
        const counting = !need.keep && this.progress.data;
        try {
          const aggregator = this.network.aggregator;
          this.inputs.blobs[need.blobId] = await readBlob(aggregator, need.blobId, {
            keep: need.keep,
            maxBytes: need.maxBytes,
            signal: this.controller.signal,
            onBytes: (n) => {
              if (!counting) return;
              this.progress.data.bytes += n;
              this.tick();
            },
          });
          this.inputs.blobs[need.blobId].source = aggregator; // named if its bytes are wrong
        } catch (error) {
          if (this.aborted) return;
          this.inputs.blobs[need.blobId] = { error: error.message };
        }
        if (counting) this.progress.data.shards += 1;
        this.update();
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_READS, needs.length) }, worker));
  }
}
