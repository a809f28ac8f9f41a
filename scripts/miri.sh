#!/usr/bin/env bash
# Runs the tests of concord's one module with `unsafe` code (src/entries.rs:
# log segments written while shared) and the log's fixed segment scenario
# under Miri, which reports any read of an unwritten slot, double drop,
# leak or data race they provoke.
#
#   scripts/miri.sh
#
# Miri needs a nightly toolchain with the `miri` component
# (`rustup toolchain install nightly --component miri`). Where there is
# none (CI machines carry only the stable toolchain and cannot fetch
# another), this prints SKIPPED and why, and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain=${CONCORD_MIRI_TOOLCHAIN:-nightly}
# Listed first: `rustup run` may try to download a missing toolchain.
if ! rustup toolchain list 2>/dev/null | grep -q "^$toolchain" ||
   ! RUSTUP_AUTO_INSTALL=0 rustup run "$toolchain" cargo miri --version >/dev/null 2>&1; then
  echo "SKIPPED: Miri: no '$toolchain' toolchain with the miri component here" \
       "(install it with: rustup toolchain install $toolchain --component miri)"
  exit 0
fi
# A target directory of its own: Miri builds everything differently.
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/miri-check \
  cargo "+$toolchain" miri test -p concord --lib -- entries:: log::tests::segments
