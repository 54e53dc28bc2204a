//! The command line: `lb init`, `lb check -c FILE`, `lb run -c FILE ...`.
//! A bad flag or config value exits 2 with one line naming it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, INIT, INIT_FORWARD};

/// A full-proxy L4 load balancer over our stack or the kernel's.
#[derive(Parser, Debug)]
#[command(name = "lb", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print a complete, commented configuration (every key spelled out).
    Init(InitArgs),
    /// Validate a configuration; exit 2 naming the key at fault.
    Check(CheckArgs),
    /// Run the balancer.
    Run(crate::run::RunArgs),
}

/// `lb init`.
#[derive(Args, Debug)]
struct InitArgs {
    /// A forwarding-mode configuration (`[forward.NAME]`: L4 packet
    /// balancing by L2 DSR, IPIP or GUE) instead of the full proxy's.
    #[arg(long)]
    forward: bool,
}

/// `lb check`.
#[derive(Args, Debug)]
struct CheckArgs {
    /// The configuration file.
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
}

/// A failure and its exit status.
pub struct Fail {
    /// 2: usage or configuration; 1: other.
    pub code: u8,
    /// One line.
    pub msg: String,
}

impl Fail {
    /// Status 2.
    pub fn usage(msg: impl Into<String>) -> Fail {
        Fail { code: 2, msg: msg.into() }
    }
    /// Status 1.
    pub fn other(msg: impl Into<String>) -> Fail {
        Fail { code: 1, msg: msg.into() }
    }
}

/// Parses `args` (program name first) and runs the command.
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
            let line: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("lb: {}", line.join(" ").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let r = match cli.cmd {
        Cmd::Init(a) => {
            print!("{}", if a.forward { INIT_FORWARD } else { INIT });
            Ok(())
        }
        Cmd::Check(a) => check(&a),
        Cmd::Run(a) => crate::run::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("lb: {}", f.msg.lines().next().unwrap_or(""));
            ExitCode::from(f.code)
        }
    }
}

fn check(a: &CheckArgs) -> Result<(), Fail> {
    let c = Config::load(&a.config).map_err(|e| Fail::usage(format!("{}: {e}", a.config.display())))?;
    let servers: usize = c.backends.iter().map(|b| b.servers.len()).sum();
    let forward = match c.forward.len() {
        0 => String::new(),
        n => format!(", {n} forward frontends"),
    };
    println!(
        "{}: ok ({} frontends, {} backends, {} servers{forward})",
        a.config.display(),
        c.frontends.len(),
        c.backends.len(),
        servers
    );
    Ok(())
}
