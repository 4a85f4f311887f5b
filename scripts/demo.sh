#!/usr/bin/env bash
# Serves the demo page: installs npm dependencies when node_modules is missing, then runs
# Vite on 127.0.0.1 (WebGPU needs a secure context: https or localhost).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-5173}
if [[ ! -d node_modules ]]; then
  npm ci --no-audit --no-fund
fi
echo "kvscope demo: http://127.0.0.1:${PORT}/"
echo "  (open it in Chrome/Edge 113+; on a machine without a GPU start Chromium with"
echo "   --enable-unsafe-webgpu --enable-unsafe-swiftshader --use-webgpu-adapter=swiftshader)"
exec npx vite --host 127.0.0.1 --port "$PORT" --strictPort
