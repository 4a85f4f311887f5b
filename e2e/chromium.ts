/**
 * How the e2e tests launch Chromium. On machines without a GPU, WebGPU comes from the
 * SwiftShader Vulkan driver inside Debian's Chromium (see docs/environment.md).
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** CI hygiene: no sandbox (containers run as root), no background traffic. */
export const CHROMIUM_BASE_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** Flags that give `navigator.gpu` a SwiftShader adapter. */
export const WEBGPU_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-unsafe-swiftshader',
  '--use-webgpu-adapter=swiftshader',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--disable-vulkan-surface',
];
