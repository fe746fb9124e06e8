#!/usr/bin/env bash
# Builds the C example plugin and installs both example plugins under a plugins root:
#   <root>/examples/swift/libpq_examples.so   (task_paths entry: examples.*)
#   <root>/examples/c/libexamples_c.so
#   <root>/examples/math/libm.pq.toml        (libm functions as typed jobs, through a manifest)
#   <root>/examples/rust/libexamples_rust.so (when cargo is present)
# Each file is written beside its target and renamed into place, so a running host never
# sees a half-written .so.
set -euo pipefail
bin="$1"
root="$2"
here="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$root/examples/swift" "$root/examples/c" "$root/examples/math" "$bin/c-plugins"
chmod go-w "$root" "$root/examples" "$root/examples/swift" "$root/examples/c" "$root/examples/math"
cc -Wall -Wextra -Werror -shared -fPIC -O2 -I"$here/Sources/CPQPlugin/include" \
    -o "$bin/c-plugins/libexamples_c.so" "$here/Plugins/examples-c/examples_c.c" -lpthread
install_atomic() {
    local src="$1" dst="$2" mode="${3:-755}"
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then return; fi
    cp "$src" "$dst.tmp.$$"
    chmod "$mode" "$dst.tmp.$$"
    mv -f "$dst.tmp.$$" "$dst"
}
install_atomic "$bin/libpq_examples.so" "$root/examples/swift/libpq_examples.so"
install_atomic "$bin/c-plugins/libexamples_c.so" "$root/examples/c/libexamples_c.so"
install_atomic "$here/Plugins/manifests/libm.pq.toml" "$root/examples/math/libm.pq.toml" 644
if command -v cargo >/dev/null; then
    mkdir -p "$root/examples/rust"
    chmod go-w "$root/examples/rust"
    cargo build --quiet --release --offline --manifest-path "$here/Plugins/examples-rust/Cargo.toml" \
        --target-dir "$bin/rust-plugins"
    install_atomic "$bin/rust-plugins/release/libexamples_rust.so" "$root/examples/rust/libexamples_rust.so"
else
    echo "cargo not found: the Rust example plugin is not built" >&2
fi
echo "example plugins installed under $root (task_paths: examples.*)"
