//! Nothing here: the suite is in `tests/madsim_cluster.rs` and only builds
//! with `RUSTFLAGS="--cfg madsim"`.
