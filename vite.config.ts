/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { resolve } from 'node:path';

// One config for the demo page (dev server + static build), the library build
// (`vite build --mode lib`) and the unit tests (vitest, Node + Dawn).
export default defineConfig(({ mode }) => ({
  server: { host: '127.0.0.1', port: 5173, strictPort: false },
  preview: { host: '127.0.0.1', port: 4173 },
  worker: { format: 'es' },
  build:
    mode === 'lib'
      ? {
          outDir: 'dist',
          emptyOutDir: false,
          sourcemap: true,
          lib: { entry: { index: resolve(__dirname, 'src/index.ts'), cli: resolve(__dirname, 'src/cli.ts') }, formats: ['es'], fileName: (_format, name) => `${name}.js` },
          rollupOptions: { external: ['webgpu', /^node:/] },
        }
      : { outDir: 'dist/demo', sourcemap: true },
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    pool: 'forks',
    setupFiles: ['test/setup.ts'],
    // SwiftShader runs WebGPU on the CPU: kernels are slow and the machine has two cores.
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
}));
