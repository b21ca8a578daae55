import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const artifact = fileURLToPath(new URL('../src/okai/chain/artifacts/ProvenanceRegistry.json', import.meta.url));

export default defineConfig({
  // Relative asset URLs: the built page works from any folder or host (a Walrus site too).
  base: './',
  resolve: { alias: { '@okai/registry-artifact': artifact } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
