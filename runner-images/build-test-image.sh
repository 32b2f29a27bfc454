#!/usr/bin/env bash
# Builds the static runnerhub-test-runner binary and the FROM-scratch image
# runnerhub-test-runner:latest, then prints the image id. Idempotent; fast when nothing changed
# (cargo is incremental, docker caches the COPY layers by content).
#
# Env: IMAGE (default runnerhub-test-runner:latest), CARGO (default cargo).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$here/test-runner"
image="${IMAGE:-runnerhub-test-runner:latest}"
target=x86_64-unknown-linux-gnu

# Our own target dir, whatever the caller exported, so the binary's path is known.
export CARGO_TARGET_DIR="$crate/target"
RUSTFLAGS='-C target-feature=+crt-static' "${CARGO:-cargo}" build --quiet --release \
    --manifest-path "$crate/Cargo.toml" --target "$target" >&2

binary="$CARGO_TARGET_DIR/$target/release/runnerhub-test-runner"
if ldd "$binary" 2>&1 | grep -q '=>'; then
    echo "error: $binary is not statically linked" >&2
    exit 1
fi

context="$CARGO_TARGET_DIR/image-context"
mkdir -p "$context"
cp -p "$crate/Dockerfile" "$context/Dockerfile"
# Copy only when changed, so docker's build cache keeps hitting.
cmp -s "$binary" "$context/runnerhub-test-runner" || cp -p "$binary" "$context/runnerhub-test-runner"

docker build --quiet -t "$image" "$context" >&2
docker image inspect --format '{{.Id}}' "$image"
