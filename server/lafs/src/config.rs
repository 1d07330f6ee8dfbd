//! The node configuration file, `DIR/lafs.toml` (documented in `docs/node-management.md`).

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Name of the configuration file inside a node directory.
pub(crate) const CONFIG_FILE: &str = "lafs.toml";

/// What a node does; a node has one or more roles, all run by `lafs run` in one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    /// Uses the grid: subscribes to the introducer (gateway and uploads come later).
    Client,
    /// Stores shares and announces itself to the introducer.
    Storage,
    /// Introduces storage servers to clients.
    Introducer,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Storage => "storage",
            Self::Introducer => "introducer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "client" => Ok(Self::Client),
            "storage" => Ok(Self::Storage),
            "introducer" => Ok(Self::Introducer),
            other => bail!("unknown role `{other}` (roles are client, storage, introducer)"),
        }
    }
}

/// Parses a comma-separated role list such as `client,storage`: at least one role, no repeats.
pub(crate) fn parse_roles(s: &str) -> Result<BTreeSet<Role>> {
    let mut roles = BTreeSet::new();
    for part in s.split(',') {
        let role: Role = part.trim().parse()?;
        if !roles.insert(role) {
            bail!("role `{role}` given twice");
        }
    }
    Ok(roles)
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeConfig {
    /// Settings of the node as a whole.
    pub node: NodeSection,
    /// Present iff the node has the introducer role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introducer: Option<IntroducerSection>,
    /// Present iff the node has the storage role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSection>,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeSection {
    /// Human-readable name, announced by storage servers.
    #[serde(default)]
    pub nickname: String,
    /// The roles this node runs.
    pub roles: BTreeSet<Role>,
    /// Introducer URL the storage and client roles use; if absent, a node with the
    /// introducer role uses its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introducer: Option<String>,
}

/// `[introducer]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntroducerSection {
    /// Address to listen on (port 0: any free port at each start).
    pub listen: SocketAddr,
    /// Seconds after which a silent storage server is forgotten.
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StorageSection {
    /// Address to listen on (port 0: any free port at each start).
    pub listen: SocketAddr,
    /// URL announced to clients; default `http://<listen address>` (required when listening
    /// on an unspecified address such as 0.0.0.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Bytes of disk space to leave free.
    #[serde(default)]
    pub reserved_space: u64,
    /// Refuse uploads.
    #[serde(default)]
    pub read_only: bool,
}

fn default_ttl_secs() -> u64 {
    90
}

impl IntroducerSection {
    /// Defaults with `listen`.
    pub(crate) fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            ttl_secs: default_ttl_secs(),
        }
    }
}

impl NodeConfig {
    /// Reads and checks `DIR/lafs.toml`.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (is this a lafs node directory?)",
                path.display()
            )
        })?;
        let config: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config
            .check()
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(config)
    }

    /// TOML text with a header comment.
    pub(crate) fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(self).context("serializing the configuration")?;
        Ok(format!(
            "# lafs node configuration, see docs/node-management.md.\n\
             # Private keys are in private/ (keep them secret).\n\n{body}"
        ))
    }

    /// Checks the sections match the roles and the introducer URL is usable.
    pub(crate) fn check(&self) -> Result<()> {
        let roles = &self.node.roles;
        if roles.is_empty() {
            bail!("[node] roles is empty");
        }
        let has = |r| roles.contains(&r);
        if has(Role::Introducer) != self.introducer.is_some() {
            bail!("an [introducer] section is required exactly when the introducer role is set");
        }
        if has(Role::Storage) != self.storage.is_some() {
            bail!("a [storage] section is required exactly when the storage role is set");
        }
        if (has(Role::Storage) || has(Role::Client))
            && !has(Role::Introducer)
            && self.node.introducer.is_none()
        {
            bail!("the storage and client roles need an introducer URL ([node] introducer)");
        }
        if let Some(url) = &self.node.introducer {
            check_introducer_url(url)?;
        }
        Ok(())
    }
}

/// Checks an introducer URL has the `ws://` or `wss://` scheme and a host.
pub(crate) fn check_introducer_url(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .with_context(|| format!("introducer URL `{url}` must start with ws:// or wss://"))?;
    if rest.split('/').next().unwrap_or("").is_empty() {
        bail!("introducer URL `{url}` has no host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse() {
        let r = parse_roles("client,storage").unwrap();
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            vec![Role::Client, Role::Storage]
        );
        assert!(parse_roles("client,client").is_err());
        assert!(parse_roles("client,helper").is_err());
        assert!(parse_roles("").is_err());
    }

    #[test]
    fn roundtrip_and_checks() {
        let c = NodeConfig {
            node: NodeSection {
                nickname: "n".into(),
                roles: parse_roles("introducer,storage").unwrap(),
                introducer: None,
            },
            introducer: Some(IntroducerSection::new("127.0.0.1:0".parse().unwrap())),
            storage: Some(StorageSection {
                listen: "127.0.0.1:0".parse().unwrap(),
                url: None,
                reserved_space: 0,
                read_only: false,
            }),
        };
        c.check().unwrap();
        let text = c.to_toml().unwrap();
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let mut bad = c.clone();
        bad.storage = None;
        assert!(bad.check().is_err());
        let mut bad = c.clone();
        bad.introducer = None;
        bad.node.roles = parse_roles("storage").unwrap();
        assert!(bad.check().is_err());
        bad.node.introducer = Some("http://x".into());
        assert!(bad.check().is_err());
        bad.node.introducer = Some("ws://127.0.0.1:1/v1/introducer".into());
        bad.check().unwrap();
        assert!(toml::from_str::<NodeConfig>(&format!("{text}\n[extra]\n")).is_err());
    }
}
