//! The `tine` binary: everything lives in the library; this maps its outcome to an exit code.

fn main() -> std::process::ExitCode {
    tine::main_with_args(std::env::args_os().skip(1))
}
