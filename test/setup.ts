import { afterAll } from 'vitest';
import { Gpu } from '../src/gpu/device';

// Dawn's Node binding can abort the worker ("futex facility returned an unexpected error")
// when the process exits with a live device, losing the file's results; destroy devices first.
afterAll(async () => {
  Gpu.destroyAll();
  await new Promise((r) => setTimeout(r, 20));
});
