#!/usr/bin/env bash
# Builds the browser package of iii-browser: the crate compiled to wasm32-unknown-unknown,
# then wasm-bindgen's JavaScript glue and TypeScript definitions (`--target web`), plus
# the package's entry module; and sets up what the browser tests drive it with (Debian's
# chromium, npm's playwright-core). Installs what is missing (as root) and says which
# package is missing otherwise. Idempotent: a second run with nothing changed takes
# seconds.
#
#   iii-browser/build.sh            # -> target/iii-browser/pkg/ (the package)
#   iii-browser/build.sh --check    # only checks that the tools are there
#
# Why this way (see README "Browser"): the rustup toolchain here has no wasm32 target
# and cannot download one. Debian's rustc-web / cargo-web / rust-web-src put a second
# compiler and cargo in /usr/bin, with the standard library's source where that
# compiler's sysroot expects it, so std is rebuilt for wasm32 with -Zbuild-std (once
# per target directory, about 2 minutes). lld gives wasm-ld. The wasm-bindgen CLI must
# be the exact version of the wasm-bindgen crate: it is installed with the rustup cargo
# into .cache/ (git-ignored; about 7 minutes the first time). playwright-core (pinned
# below) goes to .cache/browser-node/ and drives Debian's /usr/bin/chromium (a test
# tool's own browser download cannot work here); @noble/hashes is the interop page's
# SHA-256; typescript checks the generated definitions.
#
# Environment: III_BROWSER_PKG overrides the output directory; III_BROWSER_NO_INSTALL=1
# never installs anything (fails with the list instead).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

debian_rustc=/usr/bin/rustc
debian_cargo=/usr/bin/cargo
target_dir="$root/target/wasm"
out_dir=${III_BROWSER_PKG:-"$root/target/iii-browser/pkg"}
bindgen_version=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"$/\1/p' iii-browser/Cargo.toml)
if [ -z "$bindgen_version" ]; then
  echo "iii-browser/Cargo.toml must pin wasm-bindgen to an exact version (\"=x.y.z\")" >&2
  exit 1
fi
bindgen_root="$root/.cache/wasm-bindgen-cli-$bindgen_version"
bindgen="$bindgen_root/bin/wasm-bindgen"
playwright_version=1.65.1
noble_hashes_version=2.4.0
typescript_version=5.9.3
node_prefix="$root/.cache/browser-node"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
debian_packages=(rustc-web cargo-web rust-web-src lld chromium)
for package in "${debian_packages[@]}"; do
  installed "$package" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${III_BROWSER_NO_INSTALL:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "== installing Debian packages: ${missing[*]}"
  apt-get update -qq || { echo "apt-get update failed (Debian's package index)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    { echo "apt-get install ${missing[*]} failed (Debian's packages)" >&2; exit 1; }
fi
for package in "${debian_packages[@]}"; do
  installed "$package" || { echo "missing Debian package after install: $package" >&2; exit 1; }
done
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Node.js and npm drive the browser tests)" >&2; exit 1; }
done
sysroot_src="$("$debian_rustc" --print sysroot)/lib/rustlib/src/rust/library"
[ -d "$sysroot_src" ] || { echo "rust-web-src did not provide $sysroot_src" >&2; exit 1; }
command -v wasm-ld >/dev/null || { echo "wasm-ld not found (package lld)" >&2; exit 1; }

if [ ! -x "$bindgen" ] || [ "$("$bindgen" --version)" != "wasm-bindgen $bindgen_version" ]; then
  if [ "${III_BROWSER_NO_INSTALL:-0}" = 1 ]; then
    echo "missing wasm-bindgen-cli $bindgen_version in $bindgen_root" >&2
    exit 1
  fi
  echo "== installing wasm-bindgen-cli $bindgen_version into $bindgen_root (crates.io, ~7 min)"
  # Not --locked: the CLI's lockfile names a crate version the registry no longer has.
  nice -n 5 cargo install wasm-bindgen-cli --version "$bindgen_version" --root "$bindgen_root" --quiet ||
    { echo "cargo install wasm-bindgen-cli $bindgen_version failed (crates.io)" >&2; exit 1; }
fi
npm_version() { node -p "require('$node_prefix/node_modules/$1/package.json').version" 2>/dev/null || true; }
if [ "$(npm_version playwright-core)" != "$playwright_version" ] ||
  [ "$(npm_version @noble/hashes)" != "$noble_hashes_version" ] ||
  [ "$(npm_version typescript)" != "$typescript_version" ]; then
  if [ "${III_BROWSER_NO_INSTALL:-0}" = 1 ]; then
    echo "missing npm playwright-core@$playwright_version, @noble/hashes@$noble_hashes_version or typescript@$typescript_version in $node_prefix" >&2
    exit 1
  fi
  echo "== installing playwright-core@$playwright_version, @noble/hashes@$noble_hashes_version and typescript@$typescript_version into $node_prefix (npm registry)"
  mkdir -p "$node_prefix"
  [ -f "$node_prefix/package.json" ] || echo '{"private": true}' >"$node_prefix/package.json"
  npm install --prefix "$node_prefix" --no-audit --no-fund --loglevel=error "playwright-core@$playwright_version" \
    "@noble/hashes@$noble_hashes_version" "typescript@$typescript_version" ||
    { echo "npm install failed (the npm registry)" >&2; exit 1; }
fi
[ "${1:-}" = --check ] && { echo "ok: $("$debian_rustc" --version), $("$bindgen" --version)"; exit 0; }

echo "== building iii-browser for wasm32 with $("$debian_rustc" --version)"
started=$(date +%s)
mkdir -p "$target_dir"
# A clean environment for the second toolchain: whatever rustup or an outer cargo set
# (RUSTFLAGS, a wrapper, a target dir) is not for this compiler.
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
  -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET -u RUSTDOC -u RUSTUP_TOOLCHAIN \
  RUSTC_BOOTSTRAP=1 RUSTC="$debian_rustc" \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld \
  CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_PANIC=abort \
  CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
  nice -n 5 "$debian_cargo" build --release --locked -p iii-browser \
  --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort --target-dir "$target_dir" \
  2>&1 | tee "$target_dir/build.log"
# The native clippy never sees the wasm-only code: at least no compiler warning there.
if grep -q "^warning" "$target_dir/build.log"; then
  echo "the wasm32 build of iii-browser has warnings (above)" >&2
  exit 1
fi
wasm="$target_dir/wasm32-unknown-unknown/release/iii_browser.wasm"

mkdir -p "$out_dir"
"$bindgen" --target web --remove-name-section --remove-producers-section \
  --out-dir "$out_dir" --out-name iii_browser "$wasm"
# wasm-bindgen drops the `?` of an optional parameter whose type is overridden
# (`unchecked_param_type`); put it back for the two optional option objects.
sed -i -e 's/(address: string, options: InitOptions)/(address: string, options?: InitOptions)/' \
  -e 's/handler: RemoteFunctionHandler, options: RegisterFunctionOptions)/handler: RemoteFunctionHandler, options?: RegisterFunctionOptions)/' \
  "$out_dir/iii_browser.d.ts"
if [ "$(grep -cE 'options\?: (InitOptions|RegisterFunctionOptions)\)' "$out_dir/iii_browser.d.ts")" != 2 ]; then
  echo "the TypeScript definitions changed shape: check the optional parameters in build.sh" >&2
  exit 1
fi
cp iii-browser/js/index.js iii-browser/js/index.d.ts iii-browser/js/package.json "$out_dir/"
# The definitions must compile, and every documented call shape with them
# (wasm-bindgen's classes use Symbol.dispose: lib esnext).
types_check=$(mktemp -d)
cp "$out_dir"/*.d.ts iii-browser/js/check.ts "$types_check/"
if ! "$node_prefix/node_modules/.bin/tsc" --noEmit --strict --target es2022 --module es2022 \
  --moduleResolution bundler --lib esnext,dom "$types_check/check.ts" >"$types_check/tsc.log" 2>&1; then
  cat "$types_check/tsc.log" >&2
  echo "the package's TypeScript definitions do not type-check iii-browser/js/check.ts" >&2
  rm -rf "$types_check"
  exit 1
fi
rm -rf "$types_check"
echo "ok: $out_dir ($(stat -c %s "$out_dir/iii_browser_bg.wasm") bytes of wasm, $(( $(date +%s) - started )) s)"
