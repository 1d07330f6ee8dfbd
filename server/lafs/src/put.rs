//! `lafs put FILE|-`: upload a file, print its readcap.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use lafs_client::{ClientConfig, Upload, UploadOptions, UploadProgress};
use lafs_codec::Params;

use crate::node_client::{bars, byte_bar, connect, GridArgs};

/// Arguments of `lafs put`.
#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// The file to upload, or `-` for standard input (streamed; the size need not be known).
    pub file: PathBuf,
    /// Shares needed to read the file (k).
    #[arg(short = 'k', long, default_value_t = 3)]
    pub needed: u16,
    /// Total shares (N).
    #[arg(short = 'n', long, default_value_t = 10)]
    pub total: u16,
    /// Distinct servers that must hold a share for the upload to succeed.
    #[arg(long, default_value_t = 7)]
    pub happy: u16,
    /// Segment size in bytes.
    #[arg(long, default_value_t = lafs_codec::DEFAULT_SEGMENT_SIZE)]
    pub segment_size: u32,
    #[command(flatten)]
    pub grid: GridArgs,
}

struct Bars {
    encoded: ProgressBar,
    stored: ProgressBar,
}

impl UploadProgress for Bars {
    fn progress(&self, encoded: u64, acknowledged: u64) {
        self.encoded.set_position(encoded);
        self.stored.set_position(acknowledged);
    }
}

/// Writes everything `input` yields into `up`, 1 MiB at a time (memory does not grow with the
/// input); `what` names the input in errors.
pub(crate) async fn feed(up: &mut Upload, input: &mut impl Read, what: &str) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {what}")),
        };
        up.write(&buf[..n]).await?;
    }
}

pub(crate) fn put(args: &PutArgs) -> Result<()> {
    let params =
        Params::new(args.needed, args.total, args.segment_size).context("encoding parameters")?;
    let config = ClientConfig {
        params,
        happy: args.happy,
        ..ClientConfig::default()
    };
    let (mut input, size): (Box<dyn Read + Send>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(&args.file)
            .with_context(|| format!("opening {}", args.file.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        if let Some(url) = &args.grid.gateway {
            println!("{}", crate::gateway_client::put(url, input, params).await?);
            return Ok(());
        }
        let (client, _grid) = connect(&args.grid, config, usize::from(args.happy)).await?;
        let m = bars(&args.grid);
        let progress = Arc::new(Bars {
            encoded: byte_bar(&m, size, "encoded"),
            stored: byte_bar(&m, size, "stored"),
        });
        let mut up = client.upload(UploadOptions {
            progress: Some(progress.clone()),
            ..UploadOptions::default()
        });
        feed(&mut up, &mut input, "the input").await?;
        let r = up.finish().await?;
        progress.encoded.finish_and_clear();
        progress.stored.finish_and_clear();
        if args.grid.json {
            let shares: serde_json::Map<String, serde_json::Value> = r
                .shares
                .iter()
                .map(|(s, id)| (s.to_string(), id.to_string().into()))
                .collect();
            let v = serde_json::json!({
                "cap": r.cap.to_string(),
                "verify_cap": r.verify_cap.map(|c| c.to_string()),
                "size": r.size,
                "happiness": r.happiness,
                "uploaded": r.uploaded,
                "existing": r.existing,
                "shares": shares,
                "lost": r.lost.iter().map(|(s, id)| serde_json::json!({"share": s, "server": id.to_string()})).collect::<Vec<_>>(),
            });
            println!("{v}");
        } else {
            println!("{}", r.cap);
        }
        Ok(())
    })
}
