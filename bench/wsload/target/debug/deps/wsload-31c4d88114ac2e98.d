/work/main/bench/wsload/target/debug/deps/wsload-31c4d88114ac2e98.d: src/main.rs src/http.rs

/work/main/bench/wsload/target/debug/deps/wsload-31c4d88114ac2e98: src/main.rs src/http.rs

src/main.rs:
src/http.rs:
