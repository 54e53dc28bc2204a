//! The `echo` binary: see the library's docs (`apps/echo/src/lib.rs`).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    echo::main_with(std::env::args_os())
}
