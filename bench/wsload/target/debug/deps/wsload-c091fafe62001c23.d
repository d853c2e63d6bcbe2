/work/main/bench/wsload/target/debug/deps/wsload-c091fafe62001c23.d: src/main.rs src/http.rs Cargo.toml

/work/main/bench/wsload/target/debug/deps/libwsload-c091fafe62001c23.rmeta: src/main.rs src/http.rs Cargo.toml

src/main.rs:
src/http.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
