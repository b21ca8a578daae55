// The verification page: pick a network, drop a model (or open #/model/<digest>), watch
// every check of docs/verification.md resolve, then optionally re-check the data.
import './style.css';
import { loadNetworks, withOverrides, SettingsError } from './config.js';
import { ZERO_DIGEST, parseDigest } from './encoding.js';
import { CHECKS, PASSED, FAILED, requestedChecks } from './rules.js';
import { Verification } from './verify.js';
import { describePolicy, policyFromQuery, policyQuery } from './policy.js';
import { el, append, untrusted, explorerLink, formatBytes, formatTime } from './ui/dom.js';
import { lineageDiagram, short } from './ui/diagram.js';

const $ = (id) => document.getElementById(id);

const state = {
  networks: new Map(),
  network: null, // the resolved network in use (preset + served config + link + settings)
  verification: null,
  policy: policyFromQuery(new URLSearchParams()), // from the link: trainer=, publisher=, …
  lineageKey: null,
  file: null,
};

// ------------------------------------------------------------------ routing

/** `#/model/<digest>?network=…&rpc=…&aggregator=…&registry=…` as its parts, or null. */
function parseRoute(hash) {
  const match = /^#\/model\/([^?]*)(?:\?(.*))?$/.exec(hash);
  if (!match) return null;
  let given;
  try {
    given = decodeURIComponent(match[1]);
  } catch {
    given = match[1];
  }
  return { given, query: new URLSearchParams(match[2] ?? '') };
}

function routeFor(digest, network) {
  const query = new URLSearchParams({ network: network.name });
  // A link keeps the endpoints that are not the preset's, so it opens the same record.
  const keys = { rpcUrl: 'rpc', aggregator: 'aggregator', registryAddress: 'registry' };
  for (const [field, key] of Object.entries(keys)) {
    if (network.sources[field] === 'link' || network.sources[field] === 'settings') query.set(key, network[field]);
  }
  return `#/model/${digest}?${policyQuery(state.policy, query)}`;
}

function networkFromQuery(query) {
  const base = state.networks.get(query.get('network')) ?? state.networks.get(state.defaultName);
  return withOverrides(base, { rpcUrl: query.get('rpc'), aggregator: query.get('aggregator'), registryAddress: query.get('registry') }, 'link');
}

function onRoute() {
  const route = parseRoute(location.hash);
  if (route === null) return;
  try {
    state.network = networkFromQuery(route.query);
    state.policy = policyFromQuery(route.query);
  } catch (error) {
    showSettingsError(error);
    return;
  }
  renderNetwork();
  start({ given: route.given });
}

// ------------------------------------------------------------------ running

function start(source) {
  state.verification?.abort();
  state.lineageKey = null;
  state.file = source.file ?? null;
  $('result').hidden = false;
  const verification = new Verification(
    state.network,
    source,
    (result, progress) => {
      if (verification === state.verification) render(result, progress);
    },
    state.policy,
  );
  state.verification = verification;
  verification.start().then(() => {
    const digest = verification.result.facts.modelDigest;
    if (source.file && digest && verification === state.verification) {
      history.replaceState(null, '', routeFor(digest, state.network));
    }
  });
}

function rerun() {
  const current = state.verification;
  if (!current) return;
  start(state.file ? { file: state.file } : { given: current.source.given });
}

// ------------------------------------------------------------------ rendering

const STATUS_LABEL = { passed: 'passed', failed: 'failed', 'not checked': 'not checked', pending: 'checking' };
const STATUS_ICON = { passed: '✓', failed: '✗', 'not checked': '–', pending: '…' };
const statusClass = (status) => status.replace(' ', '-');

function render(result, progress) {
  const { verdict, checks, facts } = result;
  const verdictBox = $('verdict');
  verdictBox.dataset.verdict = verdict.replace(' ', '-');
  const failedChecks = CHECKS.filter(([id]) => checks[id].status === FAILED).map(([id]) => id);
  // Only the network's own deployment and RPC may say "on <network>": a link or the
  // settings can point the page anywhere.
  const redirected = ['rpcUrl', 'registryAddress'].filter((field) => ['link', 'settings'].includes(state.network.sources[field]));
  const where = redirected.length ? ` against the ${redirected.map((f) => (f === 'rpcUrl' ? 'RPC' : 'registry')).join(' and ')} the link or settings chose, not ${state.network.name}'s own` : ` on ${state.network.name}`;
  verdictBox.replaceChildren(
    el('strong', {}, verdict === 'verified' ? 'Verified' : verdict === 'pending' ? 'Checking…' : 'Not verified'),
    el(
      'span',
      {},
      verdict === 'verified'
        ? `${where}: every requested check passed for a claim of a trusted trainer.`
        : verdict === 'pending'
          ? `${where}.`
          : verdict === 'unpinned'
            ? `${where}: every check passed, but no trusted account was pinned (add trainer= to the link).`
            : failedChecks.length
              ? `${where}: ${failedChecks.join(', ')} failed.`
              : `${where}: some requested checks could not be made.`,
    ),
    el('div', { class: 'policy' }, 'Trusted: ', untrusted(describePolicy(state.policy), { limit: 600 })),
    redirected.length
      ? el('div', { class: 'warning', role: 'alert' }, `Warning: this link changes the ${redirected.map((f) => (f === 'rpcUrl' ? 'RPC endpoint' : 'registry address')).join(' and ')} of ${state.network.name}; the answer comes from ${state.network.registryAddress ?? '—'} via ${state.network.rpcUrl}.`)
      : null,
  );
  renderHashProgress(progress.hash);
  renderChecks(checks, state.verification.inputs.options);
  renderDataAction(result, progress.data);
  const key = lineageKey(facts, checks);
  if (key !== state.lineageKey) {
    state.lineageKey = key;
    renderLineage(facts, checks);
  }
}

function renderHashProgress(hash) {
  const box = $('hash-progress');
  if (!hash || !state.file) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const rate = hash.seconds > 0.25 ? hash.done / hash.seconds / 1e6 : 0;
  box.replaceChildren(
    el('span', {}, 'Hashing ', untrusted(state.file.name, { limit: 60 }), `: ${formatBytes(hash.done)} of ${formatBytes(hash.total)}`, rate ? ` · ${rate.toFixed(0)} MB/s` : ''),
    progressBar(hash.done, hash.total, 'SHA-256 of the model file'),
  );
}

function progressBar(value, max, label) {
  const bar = el('progress', { 'aria-label': label });
  bar.max = Math.max(max, 1);
  bar.value = max > 0 ? value : 1;
  return bar;
}

function renderChecks(checks, options) {
  const requested = new Set(requestedChecks(options));
  const list = $('checks');
  list.replaceChildren(
    ...CHECKS.map(([id, question]) => {
      const { status, reason } = checks[id];
      return el(
        'li',
        { class: `check ${statusClass(status)}`, 'data-check': id },
        el('span', { class: 'badge', 'aria-label': STATUS_LABEL[status] }, STATUS_ICON[status], ' ', STATUS_LABEL[status]),
        el('span', { class: 'check-text' }, el('code', { class: 'check-id' }, id), ' ', el('span', { class: 'question' }, question), requested.has(id) ? null : el('span', { class: 'optional' }, ' (optional)')),
        el('span', { class: 'reason' }, untrusted(reason, { limit: 240 })),
      );
    }),
  );
}

function renderDataAction(result, data) {
  const button = $('verify-data');
  const box = $('data-progress');
  const verification = state.verification;
  const deep = verification.inputs.options.deep;
  const ready = result.checks['attestation.matches-record'].status === PASSED;
  button.disabled = deep || !ready;
  button.textContent = deep ? 'Data checks requested' : 'Verify data';
  if (!deep || !data) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const bytes = data.totalBytes ? `${formatBytes(data.bytes)} of ${formatBytes(data.totalBytes)}` : formatBytes(data.bytes);
  box.replaceChildren(
    el('span', {}, `Shards: ${data.shards} of ${data.total} · ${bytes}`),
    progressBar(data.totalBytes ? data.bytes : data.shards, data.totalBytes ?? data.total, 'Dataset shards re-downloaded and checked'),
  );
}

function lineageKey(facts, checks) {
  return JSON.stringify([
    facts.modelDigest,
    facts.record?.attestationDigest ?? null,
    facts.attested ? 1 : 0,
    facts.imageManifest?.state ?? null,
    (facts.datasets ?? []).map((d) => (d.manifest ? 1 : 0)),
    ['image.registered', 'attestation.matches-record', 'datasets.manifests', 'datasets.shards', 'record.exists'].map((id) => checks[id].status),
  ]);
}

const statusOf = (check) => statusClass(check.status);

function renderLineage(facts, checks) {
  const box = $('lineage');
  const record = facts.record;
  if (record === null) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.hidden = false;
  const attested = facts.attested;
  const dataStatus = checks['datasets.shards'].status === FAILED || checks['datasets.manifests'].status === FAILED ? 'failed' : statusOf(checks['datasets.shards']);
  const inputs = [
    {
      title: record.imageDigest === ZERO_DIGEST ? 'Unregistered host' : 'Image',
      subtitle: short(record.imageDigest === ZERO_DIGEST ? null : record.imageDigest),
      status: statusOf(checks['image.registered']),
    },
    ...record.datasetManifestDigests.map((digest, index) => {
      const dataset = facts.datasets?.[index];
      return { title: `Dataset ${index + 1}`, subtitle: dataset?.manifest ? dataset.manifest.name : short(digest), status: dataStatus };
    }),
  ];
  const diagram = lineageDiagram({
    inputs,
    job: { title: 'Job', subtitle: attested ? attested.job.name : short(record.jobDigest), status: statusOf(checks['attestation.matches-record']) },
    model: { title: 'Model', subtitle: attested ? attested.modelFile : short(facts.modelDigest), status: state.verification.result.verdict === 'verified' ? 'passed' : statusOf(checks['attestation.statement']) },
  });
  box.replaceChildren(
    el('h2', {}, 'Lineage'),
    diagram,
    section('Model', modelFacts(facts)),
    section('Record', recordFacts(facts)),
    section('Image', imageFacts(facts)),
    section('Datasets', datasetFacts(facts)),
    attested ? section('Job', jobFacts(attested, record)) : null,
    attested ? section('Run', runFacts(attested)) : null,
    section('Witnesses', witnessFacts(facts)),
  );
}

function section(title, rows) {
  return el('section', { class: 'facts' }, el('h3', {}, title), el('dl', {}, ...rows));
}

function row(term, ...values) {
  return [el('dt', {}, term), el('dd', {}, ...values)];
}

const mono = (text) => el('code', { class: 'digest' }, text);
const note = (text) => el('span', { class: 'note' }, text);

function addressValue(address) {
  return explorerLink(state.network, 'address', address) ?? mono(address);
}

function modelFacts(facts) {
  const rows = [row('SHA-256', mono(facts.modelDigest))];
  if (facts.attested) rows.push(row('File name (attested)', untrusted(facts.attested.modelFile)));
  if (state.file) rows.push(row('Checked file', untrusted(state.file.name), note(` · ${formatBytes(state.file.size)}`)));
  return rows;
}

function recordFacts(facts) {
  const record = facts.record;
  return [
    row('Network', `${state.network.name} (chain ${state.network.chainId})`),
    row('Registry', state.network.registryAddress ? addressValue(state.network.registryAddress) : '—'),
    row('Submitter', addressValue(record.submitter)),
    row('Recorded at', formatTime(record.recordedAt), note(' (block time, UTC)')),
    row('Attestation', mono(record.attestationDigest)),
    row('Attestation blob', mono(record.attestationBlobId)),
  ];
}

function imageFacts(facts) {
  const record = facts.record;
  if (record.imageDigest === ZERO_DIGEST) return [row('Host', 'unregistered host: trained on no registered image')];
  const rows = [row('SHA-256', mono(record.imageDigest))];
  const image = facts.image;
  if (!image) return [...rows, row('Registry', 'not registered')];
  rows.push(row('System toplevel', mono(image.systemToplevel), note(' (SHA-256 of the store path, registered)')));
  if (facts.attested?.systemToplevel) rows.push(row('Node ran', untrusted(facts.attested.systemToplevel), note(' (attested)')));
  const manifest = facts.imageManifest;
  if (manifest?.state === 'ok') {
    const origin = manifest.consistent ? ' (image manifest, consistent with the registry)' : ' (image manifest, NOT consistent with the registry)';
    rows.push(row('nixpkgs revision', untrusted(manifest.nixpkgsRevision ?? '—'), note(origin)));
    rows.push(row('Flake revision', untrusted(manifest.flakeRevision ?? '—'), note(origin)));
    if (manifest.fileName) rows.push(row('File', untrusted(manifest.fileName), note(manifest.size !== null ? ` · ${formatBytes(manifest.size)}` : '')));
    rows.push(...pythonFacts(manifest.python, origin));
  } else if (facts.attested?.image) {
    rows.push(row('nixpkgs revision', untrusted(facts.attested.image.nixpkgsRevision ?? '—'), note(' (attested)')));
    rows.push(row('Flake revision', untrusted(facts.attested.image.flakeRevision ?? '—'), note(' (attested)')));
  }
  rows.push(row('Registrant', addressValue(image.registrant)), row('Registered at', formatTime(image.registeredAt)));
  rows.push(row('Manifest blob', mono(image.manifestBlobId)));
  return rows;
}

/** The image's Python: its interpreter, how many locked packages, and those added for jobs. */
function pythonFacts(python, origin) {
  if (!python) return [row('Python', 'not recorded (an image built before okai recorded it)')];
  const versions = new Map(python.packages.map((entry) => [entry.name, entry.version]));
  const extras = (python.extraPackages ?? []).map((name) => `${name} ${versions.get(name)}`);
  return [
    row('Python', untrusted(python.version), note(` · ${python.packages.length} locked packages${origin}`)),
    row('Packages for jobs', extras.length ? untrusted(extras.join(', ')) : 'none besides okai\'s own'),
  ];
}

function datasetFacts(facts) {
  const rows = [];
  facts.record.datasetManifestDigests.forEach((digest, index) => {
    const dataset = facts.datasets?.[index];
    const values = [mono(digest)];
    if (dataset) {
      values.push(el('br'), note(`${dataset.kind === 'manifest' ? 'manifest' : dataset.kind === 'blob' ? 'raw blob' : 'quilt patch'} `), mono(dataset.locator));
      if (dataset.manifest) {
        values.push(el('br'), untrusted(dataset.manifest.name), note(` · ${dataset.manifest.files} file${dataset.manifest.files === 1 ? '' : 's'}, ${dataset.manifest.shards.length} shard${dataset.manifest.shards.length === 1 ? '' : 's'}, ${formatBytes(dataset.manifest.bytes)}`));
      } else if (dataset.kind === 'manifest') {
        values.push(el('br'), note('Verify data to read and check its manifest.'));
      }
    }
    rows.push(row(`Dataset ${index + 1}`, ...values));
  });
  return rows;
}

function jobFacts(attested, record) {
  const job = attested.job;
  const model = typeof job.model?.builtin === 'string' ? `builtin ${job.model.builtin}` : 'entrypoint from Walrus';
  const rows = [
    row('SHA-256', mono(record.jobDigest)),
    row('Name', untrusted(job.name)),
    row('Model', untrusted(model)),
    row('Nodes', `${job.nodes ?? 1} × ${job.procsPerNode ?? 1} processes`),
    row('Seed', untrusted(String(job.seed ?? 0)), note(job.deterministic === false ? ' · not deterministic' : ' · deterministic')),
  ];
  const params = typeof job.hyperparameters === 'object' && job.hyperparameters !== null ? Object.entries(job.hyperparameters) : [];
  for (const [name, value] of params.slice(0, 50)) rows.push(row(untrusted(name, { limit: 40 }), untrusted(JSON.stringify(value))));
  return rows;
}

function runFacts(attested) {
  const rows = [
    row('Builder', untrusted(attested.builderId)),
    row('Run', untrusted(attested.runId)),
    row('Started', untrusted(attested.startedOn)),
    row('Finished', untrusted(attested.finishedOn)),
  ];
  for (const [name, value] of Object.entries(attested.libraries).slice(0, 20)) rows.push(row(untrusted(name, { limit: 40 }), untrusted(String(value))));
  for (const [name, value] of Object.entries(attested.metrics).slice(0, 50)) rows.push(row(untrusted(name, { limit: 40 }), untrusted(JSON.stringify(value)), note(' (metric)')));
  return rows;
}

function witnessFacts(facts) {
  const witnesses = facts.witnesses ?? [];
  const count = state.verification?.context?.witnessCount ?? witnesses.length;
  if (count === 0) return [row('Reproductions', 'none recorded yet')];
  const rows = [row('Reproductions', `${count} in all`, note(state.policy.witnesses.length ? ' (trusted ones listed below)' : ' (none trusted: witness= in the link)'))];
  return [...rows, ...witnesses.slice(0, 100).map((address, index) => row(`Witness ${index + 1}`, addressValue(address)))];
}

// ------------------------------------------------------------------ network and settings

function renderNetwork() {
  const select = $('network');
  select.value = state.network.name;
  const network = state.network;
  const describe = (field) => {
    const source = network.sources[field];
    return source ? ` (from ${source})` : ' (preset)';
  };
  $('endpoints').replaceChildren(
    el('span', {}, 'RPC '), el('code', {}, network.rpcUrl), note(describe('rpcUrl')),
    el('br'),
    el('span', {}, 'Aggregator '), el('code', {}, network.aggregator ?? '—'), note(describe('aggregator')),
    el('br'),
    el('span', {}, 'Registry '), el('code', {}, network.registryAddress ?? 'not set'), note(describe('registryAddress')),
  );
  $('rpc').value = network.rpcUrl;
  $('aggregator').value = network.aggregator ?? '';
  $('registry').value = network.registryAddress ?? '';
  $('settings-error').hidden = true;
}

function showSettingsError(error) {
  const box = $('settings-error');
  box.hidden = false;
  box.textContent = error instanceof SettingsError ? error.message : String(error);
  $('settings').open = true;
}

function setupControls() {
  const select = $('network');
  select.replaceChildren(...[...state.networks.values()].map((n) => el('option', { value: n.name }, `${n.name} (chain ${n.chainId})`)));
  select.addEventListener('change', () => {
    state.network = state.networks.get(select.value);
    renderNetwork();
    const current = state.verification?.result.facts.modelDigest;
    if (current && !state.file) location.hash = routeFor(current, state.network);
    else rerun();
  });
  $('settings-form').addEventListener('submit', (event) => {
    event.preventDefault();
    try {
      state.network = withOverrides(state.networks.get(state.network.name), { rpcUrl: $('rpc').value, aggregator: $('aggregator').value, registryAddress: $('registry').value }, 'settings');
    } catch (error) {
      showSettingsError(error);
      return;
    }
    renderNetwork();
    rerun();
  });
  $('digest-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = $('digest').value;
    const digest = parseDigest(text);
    if (digest) location.hash = routeFor(digest, state.network);
    else start({ given: text });
  });
  const drop = $('drop');
  const fileInput = $('file');
  fileInput.addEventListener('change', () => {
    if (fileInput.files.length > 0) start({ file: fileInput.files[0] });
  });
  drop.addEventListener('dragover', (event) => {
    event.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    drop.classList.remove('over');
    const file = event.dataTransfer?.files?.[0];
    if (file) start({ file });
  });
  $('verify-data').addEventListener('click', () => state.verification?.verifyData());
  window.addEventListener('hashchange', onRoute);
}

async function main() {
  const { networks, defaultName } = await loadNetworks();
  state.networks = networks;
  state.defaultName = defaultName;
  state.network = networks.get(defaultName);
  setupControls();
  try {
    state.policy = policyFromQuery(new URLSearchParams(location.search)); // a page link's policy
  } catch (error) {
    showSettingsError(error);
  }
  renderNetwork();
  if (parseRoute(location.hash)) onRoute();
  document.body.dataset.ready = 'true';
}

main().catch((error) => {
  append($('fatal'), [`The page could not start: ${error.message}`]);
  $('fatal').hidden = false;
});
