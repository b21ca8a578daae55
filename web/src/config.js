// Which network the page talks to: the presets built in (networks.json, generated from the
// CLI's), then what `okai web` serves as config.json (the running stack's endpoints), then
// the deep link's query, then the settings form. Only http(s) URLs and addresses pass.
import presets from './networks.json';
import { isAddress } from './encoding.js';

/** A clean http(s) URL (no credentials, query or fragment), or null. */
export function cleanUrl(text) {
  if (typeof text !== 'string' || text.length > 2000) return null;
  let url;
  try {
    url = new URL(text.trim());
  } catch {
    return null;
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.hash) return null;
  return url.href.replace(/\/+$/, '');
}

function fromPreset(entry) {
  return {
    name: entry.name,
    chainId: entry.chainId,
    rpcUrl: entry.rpcUrl,
    aggregator: entry.aggregators[0] ?? null,
    registryAddress: entry.registryAddress,
    explorerUrl: entry.explorerUrl,
    isDev: entry.isDev,
    sources: {},
  };
}

/** Apply overrides { rpcUrl, aggregator, registryAddress } from `source`, validated. */
export function withOverrides(network, overrides, source) {
  const next = { ...network, sources: { ...network.sources } };
  const set = (field, value) => {
    if (value === null || value === undefined || value === '') return;
    next[field] = value;
    next.sources[field] = source;
  };
  if (overrides.rpcUrl) set('rpcUrl', cleanUrl(overrides.rpcUrl) ?? invalid('RPC URL'));
  if (overrides.aggregator) set('aggregator', cleanUrl(overrides.aggregator) ?? invalid('aggregator URL'));
  if (overrides.registryAddress) set('registryAddress', isAddress(overrides.registryAddress) ? overrides.registryAddress : invalid('registry address'));
  return next;
}

export class SettingsError extends Error {}

function invalid(what) {
  throw new SettingsError(`the ${what} is not valid (http(s) URLs and 0x addresses only)`);
}

/** The networks by name, with what `okai web` serves merged in, and the default name. */
export async function loadNetworks() {
  const networks = new Map(presets.networks.map((entry) => [entry.name, fromPreset(entry)]));
  let defaultName = 'dev';
  let served = null;
  try {
    const response = await fetch('./config.json', { cache: 'no-store', credentials: 'omit' });
    if (response.ok) served = await response.json();
  } catch {
    // Static hosting: no config.json, the presets stand.
  }
  if (served && typeof served === 'object' && served.networks && typeof served.networks === 'object') {
    for (const [name, entry] of Object.entries(served.networks)) {
      if (!networks.has(name) || typeof entry !== 'object' || entry === null) continue;
      try {
        networks.set(name, withOverrides(networks.get(name), entry, 'okai web'));
      } catch {
        // A bad served value is ignored; the preset stands.
      }
    }
    if (networks.has(served.defaultNetwork)) defaultName = served.defaultNetwork;
  }
  return { networks, defaultName };
}
