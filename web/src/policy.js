// The trust policy of the page, as `okai verify` applies it (src/okai/verify/policy.py):
// whose claims count (trainers, image publishers, witnesses) and whether a model trained on
// an unregistered host is acceptable. It travels in the page link: `trainer=0x…`,
// `publisher=0x…`, `witness=0x…` (each may repeat) and `unregistered=1`.
import { ZERO_DIGEST, isAddress } from './encoding.js';
import { FAILED, NOT_CHECKED, PASSED, PENDING, requestedChecks } from './rules.js';

const INFORMATIONAL = new Set(['witnesses']);

export class PolicyError extends Error {}

/** The policy in a link's query; a malformed address is an error, never ignored. */
export function policyFromQuery(query) {
  const accounts = (key) => {
    const values = query.getAll(key).flatMap((value) => value.split(',')).filter(Boolean);
    for (const value of values) if (!isAddress(value)) throw new PolicyError(`${key}=: not an EVM address: ${value.slice(0, 60)}`);
    return [...new Set(values)];
  };
  return {
    trainers: accounts('trainer'),
    publishers: accounts('publisher'),
    witnesses: accounts('witness'),
    allowUnregisteredHost: query.get('unregistered') === '1',
  };
}

/** The policy's link parameters (what `policyFromQuery` reads back). */
export function policyQuery(policy, query) {
  for (const account of policy.trainers) query.append('trainer', account);
  for (const account of policy.publishers) query.append('publisher', account);
  for (const account of policy.witnesses) query.append('witness', account);
  if (policy.allowUnregisteredHost) query.set('unregistered', '1');
  return query;
}

export const isPinned = (policy) => policy.trainers.length > 0;

/** One line saying whom the verdict trusts. */
export function describePolicy(policy) {
  if (!isPinned(policy)) return 'nobody: no trainer is trusted, so no claim can be verified (add trainer= to the link)';
  const parts = [`trainers ${policy.trainers.join(', ')}`, `publishers ${policy.publishers.join(', ') || 'none'}`];
  if (policy.witnesses.length) parts.push(`witnesses ${policy.witnesses.join(', ')}`);
  if (policy.allowUnregisteredHost) parts.push('unregistered hosts accepted');
  return parts.join('; ');
}

const lower = (text) => text.toLowerCase();

/**
 * The rules' result for one claim under `policy`: checks rewritten as `okai verify` does,
 * and the verdict: 'verified' (a trusted trainer's claim, every check passed), 'unpinned'
 * (every check passed, nobody trusted), 'not verified' or 'pending'.
 */
export function applyPolicy(result, policy, context, options) {
  const checks = { ...result.checks };
  const record = result.facts.record;
  const pinned = isPinned(policy);
  const submitter = record?.submitter ?? null;
  const others = (context?.submitters ?? []).filter((account) => submitter === null || lower(account) !== lower(submitter));
  const total = context?.submitterTotal ?? 0;
  const ignored = (count) => (count > 0 ? `${count} claim${count === 1 ? '' : 's'} by other accounts shown and ignored: ${others.slice(0, 5).join(', ')}` : 'no other claims');
  if (submitter === null && checks['record.exists'].status === FAILED && pinned && total > 0) {
    checks['record.exists'] = { status: FAILED, code: 'untrusted-submitter', reason: `no claim by a trusted trainer (${policy.trainers.join(', ')}); ${ignored(total)}` };
  } else if (submitter !== null && checks['record.exists'].status === PASSED) {
    const whose = pinned ? 'a trusted trainer' : 'an account nobody pinned';
    checks['record.exists'] = { status: PASSED, code: checks['record.exists'].code, reason: `recorded by ${submitter}, ${whose}${others.length ? `; ${ignored(total - 1)}` : ''}` };
  }
  const image = checks['image.registered'];
  if (record?.imageDigest === ZERO_DIGEST && policy.allowUnregisteredHost) {
    checks['image.registered'] = { status: PASSED, code: 'unregistered-accepted', reason: 'unregistered host, accepted by the trust policy: the software environment (image, system) was not attested' };
  } else if (record && record.imageDigest !== ZERO_DIGEST && image.status === FAILED && pinned && image.code !== 'forged-manifest') {
    if (policy.publishers.length === 0) checks['image.registered'] = { status: FAILED, code: 'no-trusted-publisher', reason: 'no image publisher is trusted (publisher= in the link)' };
    else if (!context?.imagePublishers?.length) checks['image.registered'] = { status: FAILED, code: 'untrusted-publisher', reason: `image ${record.imageDigest} has no claim by a trusted publisher (${policy.publishers.join(', ')})` };
  }
  const witnesses = checks.witnesses;
  if (witnesses.status !== NOT_CHECKED && record) {
    const count = context?.witnessCount ?? 0;
    const seen = result.facts.witnesses ?? [];
    const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
    if (count === 0) checks.witnesses = { status: NOT_CHECKED, code: 'none', reason: 'none: nobody has recorded a reproduction' };
    else if (policy.witnesses.length && seen.length) checks.witnesses = { status: PASSED, code: 'trusted-witnesses', reason: `trusted witnesses reproduced it bit for bit: ${seen.join(', ')} (${count} in all)` };
    else if (policy.witnesses.length) checks.witnesses = { status: NOT_CHECKED, code: 'untrusted-witnesses', reason: `none of the trusted witnesses; ${plural(count, 'other account')} witnessed it (ignored)` };
    else checks.witnesses = { status: NOT_CHECKED, code: 'untrusted-witnesses', reason: `${plural(count, 'account')} recorded a reproduction, none of them trusted (witness= in the link)` };
  }
  const statuses = requestedChecks(options).filter((id) => !INFORMATIONAL.has(id)).map((id) => checks[id].status);
  let verdict;
  if (statuses.includes(FAILED)) verdict = 'not verified';
  else if (statuses.includes(PENDING)) verdict = 'pending';
  else if (!statuses.every((status) => status === PASSED)) verdict = 'not verified';
  else verdict = pinned ? 'verified' : 'unpinned';
  return { ...result, checks, verdict };
}
