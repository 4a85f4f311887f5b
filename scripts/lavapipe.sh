#!/usr/bin/env bash
# Fetches Mesa's lavapipe (a Vulkan driver that runs on the CPU: LLVM-compiled, AVX2-wide) from
# Debian bookworm-backports into .cache/lavapipe/ (the system's apt state and packages are left
# alone) and prints the path of its ICD file, for Dawn in Node:
#
#   export VK_ICD_FILENAMES=$(bash scripts/lavapipe.sh)
#   npm run eval -- --spec e2e/eval/quick.json
#
# Why: on CPU machines lavapipe runs kvscope's kernels ~2.5x faster than SwiftShader (the default);
# see e2e/eval/README.md. Debian bookworm's own lavapipe (Mesa 22.3) is refused by Dawn (it lacks
# shaderUniform*ArrayDynamicIndexing); Mesa 25 from backports works. Needs network access to
# deb.debian.org on first use, apt-get and dpkg-deb; later calls only print the path.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${KVSCOPE_LAVAPIPE_DIR:-$PWD/.cache/lavapipe}
ICD=$DIR/lvp_icd.json
if [[ -f $ICD ]]; then
  echo "$ICD"
  exit 0
fi

arch=$(dpkg --print-architecture 2>/dev/null || echo unknown)
if [[ $arch != amd64 && $arch != arm64 ]]; then
  echo "lavapipe.sh: needs a Debian amd64 or arm64 machine (dpkg says: $arch)" >&2
  exit 1
fi
mkdir -p "$DIR/lists/partial" "$DIR/cache/archives/partial" "$DIR/root"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$keyring] http://deb.debian.org/debian bookworm-backports main" > "$DIR/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$DIR/lists" -o "Dir::Cache=$DIR/cache" -o Debug::NoLocking=1
  -o "APT::Sandbox::User=$(id -un)"
)
echo "lavapipe.sh: fetching mesa-vulkan-drivers from bookworm-backports into $DIR" >&2
apt-get "${apt_opts[@]}" update -qq >&2
(cd "$DIR" && rm -f mesa-vulkan-drivers_*.deb && apt-get "${apt_opts[@]}" download mesa-vulkan-drivers/bookworm-backports >&2)
dpkg-deb -x "$DIR"/mesa-vulkan-drivers_*.deb "$DIR/root"
lib=$(find "$DIR/root" -name libvulkan_lvp.so | head -n 1)
if [[ -z $lib ]]; then
  echo "lavapipe.sh: the package has no libvulkan_lvp.so" >&2
  exit 1
fi
missing=$(ldd "$lib" | grep 'not found' || true)
if [[ -n $missing ]]; then
  echo "lavapipe.sh: $lib needs libraries this machine lacks (install them with apt-get):" >&2
  echo "$missing" >&2
  exit 1
fi
printf '{\n  "file_format_version": "1.0.0",\n  "ICD": { "library_path": "%s", "api_version": "1.3.0" }\n}\n' "$lib" > "$ICD"
echo "$ICD"
