import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The registry ABI comes from the contract artifact committed in the Python package: one
// source of truth. Only the ABI and the SHA-256 of the runtime code go into the page, which
// compares the code at the registry address with it.
const ARTIFACT = fileURLToPath(new URL('../src/okai/chain/artifacts/ProvenanceRegistry.json', import.meta.url));
const ABI_MODULE = 'virtual:okai-registry-abi';

function registryAbi() {
  return {
    name: 'okai-registry-abi',
    resolveId: (id) => (id === ABI_MODULE ? '\0' + ABI_MODULE : null),
    load(id) {
      if (id !== '\0' + ABI_MODULE) return null;
      this.addWatchFile(ARTIFACT);
      const { abi, deployedBytecode } = JSON.parse(readFileSync(ARTIFACT, 'utf8'));
      const code = Buffer.from(deployedBytecode.slice(2), 'hex');
      const codeSha256 = 'sha256:' + createHash('sha256').update(code).digest('hex');
      return `export default ${JSON.stringify(abi)};\nexport const codeSha256 = ${JSON.stringify(codeSha256)};`;
    },
  };
}

export default defineConfig({
  // Relative asset URLs: the built page works from any folder or host (a Walrus site too).
  base: './',
  plugins: [registryAbi()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
