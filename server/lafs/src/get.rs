//! `lafs get CAP [-o FILE]`: download a file (to standard output by default).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lafs_caps::Cap;
use lafs_client::{ClientConfig, Download};

use crate::node_client::{bars, byte_bar, connect, GridArgs};

/// Arguments of `lafs get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The cap to read (readcap: plaintext; verifycap: verified ciphertext; literal cap).
    pub cap: String,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub grid: GridArgs,
}

pub(crate) fn get(args: &GetArgs) -> Result<()> {
    let cap: Cap = args.cap.trim().parse().context("parsing the cap")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let mut out: Box<dyn Write> = match &args.output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None => Box::new(std::io::stdout().lock()),
        };
        if let Some(url) = &args.grid.gateway {
            crate::gateway_client::get(url, &cap.to_string(), &mut out).await?;
            return Ok(());
        }
        let mut dl = match cap {
            Cap::Literal(l) => Download::literal(&l),
            _ => {
                let (client, _grid) = connect(&args.grid, ClientConfig::default(), 1).await?;
                client.open(&cap).await?
            }
        };
        let m = bars(&args.grid);
        let bar = byte_bar(&m, Some(dl.size()), "read");
        let mut n = 0u64;
        let copied = async {
            while let Some(chunk) = dl.next_chunk().await {
                let chunk = chunk?;
                out.write_all(&chunk).context("writing the output")?;
                n += chunk.len() as u64;
                bar.set_position(n);
            }
            out.flush().context("writing the output")
        }
        .await;
        bar.finish_and_clear();
        if let (Err(_), Some(path)) = (&copied, &args.output) {
            // No truncated file is left to be mistaken for the whole one (every byte written
            // was verified, but the file is not all there).
            drop(out);
            let _ = std::fs::remove_file(path);
        }
        copied?;
        if args.grid.json && args.output.is_some() {
            let v = serde_json::json!({ "size": n, "advisories": dl.advisories().len() });
            println!("{v}");
        }
        Ok(())
    })
}
