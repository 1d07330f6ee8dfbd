//! `lafs create`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::{
    check_introducer_url, parse_roles, IntroducerSection, NodeConfig, NodeSection, Role,
    StorageSection, CONFIG_FILE,
};
use crate::keys::{self, create_private_dir, key_path, ACCOUNT_KEY, NODE_KEY, PRIVATE_DIR};
use crate::CreateArgs;

pub(crate) fn create(args: &CreateArgs) -> Result<()> {
    let roles = parse_roles(&args.roles)?;
    let has = |r| roles.contains(&r);
    if args.port.is_some() && !has(Role::Introducer) {
        bail!("--port sets the introducer's port, but the node has no introducer role");
    }
    if (args.storage_port.is_some() || args.storage_url.is_some()) && !has(Role::Storage) {
        bail!("--storage-port/--storage-url need the storage role");
    }
    if let Some(url) = &args.introducer {
        check_introducer_url(url)?;
    }
    let listen = |port: Option<u16>| -> Result<SocketAddr> {
        let port = match port {
            Some(p) => p,
            None => free_port(args.host)?,
        };
        Ok(SocketAddr::new(args.host, port))
    };
    let introducer = if has(Role::Introducer) {
        Some(IntroducerSection::new(listen(args.port)?))
    } else {
        None
    };
    let storage = if has(Role::Storage) {
        let section = StorageSection {
            listen: listen(args.storage_port)?,
            url: args.storage_url.clone(),
            reserved_space: 0,
            read_only: false,
        };
        if section.listen.ip().is_unspecified() && section.url.is_none() {
            bail!(
                "listening on {} (all interfaces) needs --storage-url: the URL clients should use",
                section.listen.ip()
            );
        }
        Some(section)
    } else {
        None
    };
    let config = NodeConfig {
        node: NodeSection {
            nickname: args.nickname.clone(),
            roles: roles.clone(),
            introducer: args.introducer.clone(),
        },
        introducer,
        storage,
    };
    config.check()?;
    let text = config.to_toml()?;

    let dir = &args.dir;
    let created = prepare_dir(dir)?;
    if let Err(e) = write_node(dir, &config, &text) {
        // Remove what we wrote, and the directory itself if we created it.
        if created {
            let _ = fs::remove_dir_all(dir);
        } else {
            let _ = fs::remove_dir_all(dir.join(PRIVATE_DIR));
            let _ = fs::remove_file(dir.join(CONFIG_FILE));
        }
        return Err(e);
    }
    let names: Vec<String> = roles.iter().map(ToString::to_string).collect();
    println!(
        "created lafs node ({}) in {}",
        names.join(","),
        dir.display()
    );
    if let Some(i) = &config.introducer {
        println!("introducer will listen on {}", i.listen);
    }
    if let Some(s) = &config.storage {
        println!("storage will listen on {}", s.listen);
    }
    println!("start it with: lafs run {}", dir.display());
    Ok(())
}

/// Creates `dir` (mode 0700), or accepts an existing empty directory; refuses anything else.
/// Returns whether it created the directory.
fn prepare_dir(dir: &Path) -> Result<bool> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                bail!(
                    "{} exists and is not a directory; refusing to overwrite",
                    dir.display()
                );
            }
            let mut entries =
                fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
            if entries.next().is_some() {
                if dir.join(CONFIG_FILE).exists() {
                    bail!(
                        "{} already holds a lafs node; refusing to overwrite",
                        dir.display()
                    );
                }
                bail!("{} is not empty; refusing to overwrite", dir.display());
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            create_private_dir(dir)?;
            Ok(true)
        }
        Err(e) => Err(e).with_context(|| format!("inspecting {}", dir.display())),
    }
}

fn write_node(dir: &Path, config: &NodeConfig, text: &str) -> Result<()> {
    create_private_dir(&dir.join(PRIVATE_DIR))?;
    keys::generate(&key_path(dir, NODE_KEY))?;
    if config.node.roles.contains(&Role::Client) {
        keys::generate(&key_path(dir, ACCOUNT_KEY))?;
    }
    let path = dir.join(CONFIG_FILE);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A TCP port free on `host` right now (the OS picks it).
fn free_port(host: IpAddr) -> Result<u16> {
    let l = TcpListener::bind(SocketAddr::new(host, 0))
        .with_context(|| format!("finding a free port on {host}"))?;
    Ok(l.local_addr()?.port())
}
