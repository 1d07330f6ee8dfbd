//! `lafs`: create and run lafs nodes.
//!
//! A node is a directory (`lafs.toml` + `private/` keys + role data) running one or more roles
//! in one process: `introducer`, `storage`, `client`. See `docs/node-management.md`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod check;
mod config;
mod create;
mod demo;
mod dirs;
mod gateway_client;
mod get;
mod keys;
mod node_client;
mod put;
mod run;

/// lafs: a least-authority file store. Clients encrypt and erasure-code files themselves;
/// storage servers only ever hold ciphertext; capabilities are the only access control.
#[derive(Debug, Parser)]
#[command(name = "lafs", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a node directory: configuration and fresh private keys.
    Create(CreateArgs),
    /// Run every role of a node until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Upload a file (or standard input) to the grid and print its readcap.
    Put(put::PutArgs),
    /// Download a file from the grid (to standard output unless -o is given).
    Get(get::GetArgs),
    /// Find a file's shares and say whether it is healthy (exit status 2 if not).
    Check(check::CheckArgs),
    /// Run a whole local demo grid in this process: an introducer, storage nodes and a
    /// gateway serving the web UI, all on 127.0.0.1, until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Create a mutable directory (or, with --immutable DIR, snapshot a local tree) and print
    /// its cap; with a target, also link it there.
    Mkdir(dirs::MkdirArgs),
    /// List a directory.
    Ls(dirs::LsArgs),
    /// Copy files or trees between the local disk and the grid (or within the grid).
    Cp(dirs::CpArgs),
    /// Move (rename) a directory entry.
    Mv(dirs::TwoPaths),
    /// Unlink a directory entry.
    Rm(dirs::RmArgs),
    /// Link an existing grid object under another name.
    Ln(dirs::TwoPaths),
    /// Manage aliases (NAME: for a directory cap).
    #[command(subcommand)]
    Alias(dirs::AliasCmd),
}

/// Arguments of `lafs create`.
#[derive(Debug, Args)]
struct CreateArgs {
    /// Comma-separated roles: client, storage, introducer (e.g. `client,storage`).
    roles: String,
    /// The node directory to create (must not exist, or be empty).
    dir: PathBuf,
    /// Introducer URL (ws://HOST:PORT/v1/introducer) for the storage and client roles; a node
    /// with the introducer role uses its own when this is omitted.
    #[arg(long, value_name = "URL")]
    introducer: Option<String>,
    /// Address to listen on (never all interfaces unless given explicitly, e.g. 0.0.0.0).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Introducer role: port to listen on (0 = any free port at each start; default: a port
    /// free now, fixed in the configuration).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Storage role: port to listen on (0 = any free port at each start; default: a port free
    /// now, fixed in the configuration).
    #[arg(long, value_name = "PORT")]
    storage_port: Option<u16>,
    /// Storage role: URL to announce instead of http://HOST:PORT (required with --host 0.0.0.0).
    #[arg(long, value_name = "URL")]
    storage_url: Option<String>,
    /// Human-readable node name (announced by storage servers).
    #[arg(long, value_name = "NAME", default_value = "")]
    nickname: String,
}

/// Arguments of `lafs run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// The node directory.
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Create(args) => create::create(&args),
        Command::Run(args) => run::run(&args.dir),
        Command::Put(args) => put::put(&args),
        Command::Get(args) => get::get(&args),
        Command::Check(args) => match check::check(&args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Demo(args) => demo::demo(&args),
        Command::Mkdir(args) => dirs::mkdir(&args),
        Command::Ls(args) => dirs::ls(&args),
        Command::Cp(args) => dirs::cp(&args),
        Command::Mv(args) => dirs::mv(&args),
        Command::Rm(args) => dirs::rm(&args),
        Command::Ln(args) => dirs::ln(&args),
        Command::Alias(cmd) => dirs::alias(&cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lafs: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
