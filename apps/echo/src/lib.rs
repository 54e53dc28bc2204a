//! `echo`: an echo server (TCP, UDP, sockperf) and its load generator, written
//! once over the Flow API and run on our stack or the kernel's.
//!
//! ```sh
//! echo server --stack user --port tap:echo0 --ip 198.18.0.2/24 --ip 2001:2::2/64 --listen :7
//! echo server --stack kernel --listen 127.0.0.1:7 [--sockperf]
//! echo client --stack kernel --target tcp://127.0.0.1:7 --conns 8 --size 64 --mode pingpong --duration 5
//! echo client --stack user ... --target tls://echo.test:443 --resolver 198.18.0.2:53 --ca ca.pem
//! echo server ... --tls-cert cert.pem --tls-key key.pem
//! echo resolve --stack user ... --resolver 198.18.0.2:53 --name echo.test
//! echo bench      # our stack vs the kernel's, both ends in this process; no root, no NIC
//! ```
//!
//! Every wire-affecting value (backlog, SYN backlog and timeout, MSS, buffers,
//! RTO bounds, retries, TIME-WAIT, ...) is a flag whose value the app passes
//! into `ListenConfig` / `TcpConfig`; `--help` shows them all. A bad flag, a
//! refused or unreachable target exits with status 2 and one line naming it.
#![forbid(unsafe_code)]

pub mod bench;
pub mod client;
pub mod connect_opts;
pub mod opts;
pub mod server;
pub mod sockperf;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
/// Echo server and load generator over our stack or the kernel's.
#[derive(Parser, Debug)]
#[command(name = "echo", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve TCP and UDP echo (or sockperf) on a port.
    Server(opts::ServerArgs),
    /// Load a TCP echo server.
    Client(opts::ClientArgs),
    /// Our stack vs the kernel's, both ends in this process (no root, no NIC).
    Bench(opts::BenchArgs),
    /// Look a name up (A and AAAA) with the stub resolver on the chosen stack.
    Resolve(opts::ResolveCmdArgs),
}

/// A failure and the exit status it earns.
pub struct Fail {
    /// 2: usage (bad flag or value, refused or unreachable target); 1: other.
    pub code: u8,
    /// One line.
    pub msg: String,
}

impl Fail {
    /// A usage error (status 2).
    pub fn usage(msg: impl Into<String>) -> Fail {
        Fail { code: 2, msg: msg.into() }
    }
    /// Any other failure (status 1).
    pub fn other(msg: impl Into<String>) -> Fail {
        Fail { code: 1, msg: msg.into() }
    }
}

/// Parses `args` (program name first) and runs the command; the exit status
/// is 2 for usage errors (one line on stderr), 1 for other failures.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            // clap's message up to its usage block, on one line.
            let line: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("echo: {}", line.join(" ").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let r = match cli.cmd {
        Cmd::Server(a) => opts::server(a),
        Cmd::Client(a) => opts::client(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Resolve(a) => opts::resolve(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("echo: {}", f.msg.lines().next().unwrap_or(""));
            ExitCode::from(f.code)
        }
    }
}
