//! `lafs check CAP [--verify] [--repair]`: where are the shares, is the file healthy; for
//! mutable files and directories, which versions exist where, and repair.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use lafs_caps::Cap;
use lafs_client::{
    mutable_public_key, CheckReport, ClientConfig, CopyStatus, MutableCheckReport,
    MutableRepairReport,
};

use crate::node_client::{connect, GridArgs};

/// Arguments of `lafs check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The cap to check (readcap or verifycap; for mutable files and directories any cap).
    pub cap: String,
    /// Also read every share in full and verify every byte (reports corrupt immutable shares
    /// to their servers).
    #[arg(long)]
    pub verify: bool,
    /// Mutable files and directories: verify, then rebuild missing shares of the latest
    /// version and store them, replacing stale and corrupt copies (any cap suffices).
    #[arg(long)]
    pub repair: bool,
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
    if let Some(public) = mutable_public_key(&cap) {
        return check_mutable(args, &rt, &public);
    }
    if args.repair {
        anyhow::bail!("--repair is implemented for mutable files and directories only");
    }
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
            if report.k == 0 {
                // No share found: the encoding and size are in the shares' UEB, so unknown.
                println!("no share of this file was found: nothing to read or repair from");
            } else {
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
            }
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

fn version_json(r: &MutableCheckReport) -> serde_json::Value {
    let versions: Vec<serde_json::Value> = r
        .versions
        .iter()
        .map(|v| {
            serde_json::json!({
                "seqnum": v.info.seqnum,
                "root": lafs_proto::ids::base32_encode(&v.info.root.0),
                "k": v.info.params.k(),
                "n": v.info.params.n(),
                "file_size": v.info.file_size,
                "shares": v.shares.iter().collect::<Vec<_>>(),
                "copies": v.copies,
                "recoverable": v.recoverable,
            })
        })
        .collect();
    let copies: Vec<serde_json::Value> = r
        .copies
        .iter()
        .map(|c| {
            serde_json::json!({
                "server": c.server.to_string(),
                "share": c.share,
                "length": c.length,
                "seqnum": c.version.map(|v| v.seqnum),
                "status": status_text(&c.status),
            })
        })
        .collect();
    let (k, n) = r.k_n();
    serde_json::json!({
        "storage_index": lafs_proto::ids::storage_index_to_text(&r.storage_index),
        "mutable": true,
        "seqnum": r.latest.map(|l| l.seqnum),
        "k": k,
        "n": n,
        "file_size": r.latest.map(|l| l.file_size),
        "happy": r.happy,
        "servers_queried": r.servers_queried,
        "servers_reachable": r.servers_reachable,
        "good_shares": r.good_shares,
        "happiness": r.happiness,
        "stale_copies": r.stale_copies,
        "newer_unrecoverable": r.newer_unrecoverable,
        "uncoordinated": r.uncoordinated,
        "recoverable": r.recoverable,
        "healthy": r.healthy,
        "verified": r.verified,
        "versions": versions,
        "copies": copies,
        "unreachable": r.unreachable.iter().map(|(s, e)| serde_json::json!({"server": s.to_string(), "error": e.to_string()})).collect::<Vec<_>>(),
    })
}

fn print_mutable(r: &MutableCheckReport) {
    let verdict = if r.healthy {
        "healthy"
    } else if r.recoverable {
        "NOT HEALTHY (recoverable)"
    } else {
        "NOT RECOVERABLE"
    };
    println!("{verdict}");
    println!(
        "storage index {} (mutable)",
        lafs_proto::ids::storage_index_to_text(&r.storage_index)
    );
    match r.latest {
        Some(l) => println!(
            "latest version: seqnum {}, {}-of-{} encoding, {} bytes; {} of {} shares good, \
             happiness {} (needs {})",
            l.seqnum,
            l.params.k(),
            l.params.n(),
            l.file_size,
            r.good_shares,
            l.params.n(),
            r.happiness,
            r.happy
        ),
        None => println!("no recoverable version"),
    }
    for v in &r.versions {
        println!(
            "  version seqnum {}: {} distinct share(s) in {} cop{}{}",
            v.info.seqnum,
            v.shares.len(),
            v.copies,
            if v.copies == 1 { "y" } else { "ies" },
            if v.recoverable {
                ""
            } else {
                " (not recoverable)"
            }
        );
    }
    if r.uncoordinated {
        println!("  two different versions share the latest seqnum: a writer must publish again");
    }
    if r.newer_unrecoverable {
        println!("  a newer version exists with fewer than k shares");
    }
    if r.stale_copies > 0 {
        println!(
            "  {} stale, corrupt or unreadable cop{}",
            r.stale_copies,
            if r.stale_copies == 1 { "y" } else { "ies" }
        );
    }
    println!(
        "{} of {} servers answered{}",
        r.servers_reachable,
        r.servers_queried,
        if r.verified {
            "; every share read and verified"
        } else {
            ""
        }
    );
    let mut by_server: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &r.copies {
        let seq = c
            .version
            .map_or_else(String::new, |v| format!(" seq{}", v.seqnum));
        by_server
            .entry(c.server.to_string())
            .or_default()
            .push(format!("sh{}{seq} {}", c.share, status_text(&c.status)));
    }
    for (server, copies) in by_server {
        println!("  {}: {}", &server[..16], copies.join(", "));
    }
    for (server, e) in &r.unreachable {
        println!("  {}: unreachable ({e})", &server.to_string()[..16]);
    }
}

fn check_mutable(
    args: &CheckArgs,
    rt: &tokio::runtime::Runtime,
    public: &lafs_caps::MutablePublicKey,
) -> Result<ExitCode> {
    let config = ClientConfig {
        happy: args.happy,
        ..ClientConfig::default()
    };
    let (report, repair): (MutableCheckReport, Option<MutableRepairReport>) =
        rt.block_on(async {
            let (client, _grid) = connect(&args.grid, config, 1).await?;
            if args.repair {
                let rep = client.repair_mutable(public).await?;
                Ok::<_, anyhow::Error>((rep.after.clone(), Some(rep)))
            } else {
                Ok((client.check_mutable(public, args.verify).await?, None))
            }
        })?;
    if args.grid.json {
        let mut v = version_json(&report);
        if let Some(rep) = &repair {
            v["repair"] = serde_json::json!({
                "before": version_json(&rep.before),
                "rebuilt": rep.rebuilt,
                "stored": rep.stored.iter().map(|(s, sh)| serde_json::json!({"server": s.to_string(), "share": sh})).collect::<Vec<_>>(),
                "failed": rep.failed.iter().map(|(s, sh, e)| serde_json::json!({"server": s.to_string(), "share": sh, "error": e})).collect::<Vec<_>>(),
            });
        }
        println!("{v}");
    } else {
        if let Some(rep) = &repair {
            println!("before repair:");
            print_mutable(&rep.before);
            println!(
                "repair: {} share(s) rebuilt, {} cop{} stored, {} failed",
                rep.rebuilt.len(),
                rep.stored.len(),
                if rep.stored.len() == 1 { "y" } else { "ies" },
                rep.failed.len()
            );
            for (s, sh, e) in &rep.failed {
                println!("  sh{sh} to {}: {e}", &s.to_string()[..16]);
            }
            println!("after repair:");
        }
        print_mutable(&report);
    }
    Ok(if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
