//! Nothing here: the suites are in `tests/` (the single-group cluster,
//! membership, stalled links, and the multi-group host) and only build
//! with `RUSTFLAGS="--cfg madsim"`.
