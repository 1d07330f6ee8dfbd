//! `lafs check CAP [--verify]`: where are the shares, is the file healthy.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use lafs_caps::Cap;
use lafs_client::{CheckReport, ClientConfig, CopyStatus};

use crate::node_client::{connect, GridArgs};

/// Arguments of `lafs check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The cap to check (readcap or verifycap).
    pub cap: String,
    /// Also read every share in full and verify every byte (reports corrupt shares to their
    /// servers).
    #[arg(long)]
    pub verify: bool,
    /// Happiness threshold the file is checked against.
    #[arg(long, default_value_t = 7)]
    pub happy: u16,
    #[command(flatten)]
    pub grid: GridArgs,
}

fn status_text(s: &CopyStatus) -> String {
    match s {
        CopyStatus::TrailerOk => "ok".into(),
        CopyStatus::Verified => "verified".into(),
        CopyStatus::Corrupt(r) => format!("CORRUPT: {r}"),
        CopyStatus::Unreadable(r) => format!("unreadable: {r}"),
        _ => "unknown".into(),
    }
}

/// Exit status: 0 healthy, 2 not healthy (1 is any error).
pub(crate) fn check(args: &CheckArgs) -> Result<ExitCode> {
    let cap: Cap = args.cap.trim().parse().context("parsing the cap")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt.block_on(async {
        let config = ClientConfig {
            happy: args.happy,
            ..ClientConfig::default()
        };
        if let Cap::Literal(l) = &cap {
            // The file is inside the cap: nothing to ask any server.
            return Ok::<_, anyhow::Error>(CheckReport::literal(l));
        }
        let (client, _grid) = connect(&args.grid, config, 1).await?;
        Ok(client.check(&cap, args.verify).await?)
    })?;
    if args.grid.json {
        let copies: Vec<serde_json::Value> = report
            .copies
            .iter()
            .map(|c| {
                serde_json::json!({
                    "server": c.server.to_string(),
                    "share": c.share,
                    "length": c.length,
                    "status": status_text(&c.status),
                })
            })
            .collect();
        let v = serde_json::json!({
            "storage_index": report.storage_index.map(|si| lafs_proto::ids::storage_index_to_text(&si)),
            "k": report.k,
            "n": report.n,
            "file_size": report.file_size,
            "happy": report.happy,
            "servers_queried": report.servers_queried,
            "servers_reachable": report.servers_reachable,
            "good_shares": report.good_shares,
            "happiness": report.happiness,
            "recoverable": report.recoverable,
            "healthy": report.healthy,
            "verified": report.verified,
            "copies": copies,
            "unreachable": report.unreachable.iter().map(|(s, e)| serde_json::json!({"server": s.to_string(), "error": e.to_string()})).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        let verdict = if report.healthy {
            "healthy"
        } else if report.recoverable {
            "NOT HEALTHY (recoverable)"
        } else {
            "NOT RECOVERABLE"
        };
        println!("{verdict}");
        if let Some(si) = report.storage_index {
            println!(
                "storage index {}",
                lafs_proto::ids::storage_index_to_text(&si)
            );
            println!(
                "{}-of-{} encoding, {} bytes; {} of {} shares good, happiness {} (needs {})",
                report.k,
                report.n,
                report.file_size.unwrap_or(0),
                report.good_shares,
                report.n,
                report.happiness,
                report.happy
            );
            println!(
                "{} of {} servers answered{}",
                report.servers_reachable,
                report.servers_queried,
                if report.verified {
                    "; every share read and verified"
                } else {
                    ""
                }
            );
            let mut by_server: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for c in &report.copies {
                by_server
                    .entry(c.server.to_string())
                    .or_default()
                    .push(format!("sh{} {}", c.share, status_text(&c.status)));
            }
            for (server, copies) in by_server {
                println!("  {}: {}", &server[..16], copies.join(", "));
            }
            for (server, e) in &report.unreachable {
                println!("  {}: unreachable ({e})", &server.to_string()[..16]);
            }
        } else {
            println!("literal cap: the file is inside the cap");
        }
    }
    Ok(if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
