//! Caps: parsing, what each kind grants, share links.

use lafs_caps::Cap;
use wasm_bindgen::prelude::wasm_bindgen;

use crate::{Error, LafsError};

/// A parsed cap: its kind, what it grants, and the public facts derived from it.
///
/// Built by [`parse_cap`]. For a readcap, [`CapInfo::text`] and the derived facts are computed
/// here in the page, from the cap alone, without any network access.
///
/// A `CapInfo` of a readcap or literal cap holds a secret (the cap's text); `Debug` never prints
/// it.
#[wasm_bindgen]
#[derive(Clone, PartialEq, Eq)]
pub struct CapInfo {
    kind: &'static str,
    kind_name: String,
    grants: String,
    can_read: bool,
    text: String,
    storage_index: Option<String>,
    selection_index: Option<String>,
    verify_cap: Option<String>,
    literal_data: Option<Vec<u8>>,
    read_only_cap: Option<String>,
    traverse_cap: Option<String>,
}

impl core::fmt::Debug for CapInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CapInfo")
            .field("kind", &self.kind)
            .field("storage_index", &self.storage_index)
            .field("selection_index", &self.selection_index)
            .finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl CapInfo {
    /// Short kind name, stable for scripts: `"readcap"`, `"verifycap"` or `"literal"` for
    /// immutable files, `"directory"` for directory caps (any level), `"mutable"` for mutable
    /// file caps (`"unknown"` for a kind this version of the API cannot describe).
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        self.kind.to_owned()
    }

    /// Readable kind name for people, e.g. `"immutable readcap"`.
    #[wasm_bindgen(getter, js_name = kindName)]
    pub fn kind_name(&self) -> String {
        self.kind_name.clone()
    }

    /// One or two sentences saying what holding this cap allows, for people.
    #[wasm_bindgen(getter)]
    pub fn grants(&self) -> String {
        self.grants.clone()
    }

    /// Whether the cap grants reading the file's contents (readcaps and literal caps do;
    /// verifycaps do not).
    #[wasm_bindgen(getter, js_name = canRead)]
    pub fn can_read(&self) -> bool {
        self.can_read
    }

    /// The cap in canonical text form (lowercase). A secret for readcaps and literal caps.
    #[wasm_bindgen(getter)]
    pub fn text(&self) -> String {
        self.text.clone()
    }

    /// Storage index (32 bytes, lowercase hex, 64 characters) for readcaps and verifycaps: the
    /// name the servers file the shares under. Public. `undefined` for literal caps.
    #[wasm_bindgen(getter, js_name = storageIndex)]
    pub fn storage_index(&self) -> Option<String> {
        self.storage_index.clone()
    }

    /// Server-selection index (16 bytes, lowercase hex) for readcaps and verifycaps: decides
    /// which servers hold the shares. Public. `undefined` for literal caps.
    #[wasm_bindgen(getter, js_name = selectionIndex)]
    pub fn selection_index(&self) -> Option<String> {
        self.selection_index.clone()
    }

    /// The verifycap of the same file, in text form: derived from a readcap (one way: the
    /// verifycap holds no key), the cap itself for a verifycap, `undefined` for a literal cap
    /// (its file is inside the cap: there are no shares to verify).
    #[wasm_bindgen(getter, js_name = verifyCap)]
    pub fn verify_cap(&self) -> Option<String> {
        self.verify_cap.clone()
    }

    /// For a literal cap, the file's whole contents (0–55 bytes); `undefined` otherwise.
    #[wasm_bindgen(getter, js_name = literalData)]
    pub fn literal_data(&self) -> Option<Vec<u8>> {
        self.literal_data.clone()
    }

    /// For a write cap (directory or mutable file), the read cap of the same directory or
    /// file, derived in the tab (one way); `undefined` otherwise. A secret, like the cap.
    #[wasm_bindgen(getter, js_name = readOnlyCap)]
    pub fn read_only_cap(&self) -> Option<String> {
        self.read_only_cap.clone()
    }

    /// For a directory write or read cap, the directory's traversal cap (structure only: no
    /// names, no contents), derived in the tab; `undefined` otherwise.
    #[wasm_bindgen(getter, js_name = traverseCap)]
    pub fn traverse_cap(&self) -> Option<String> {
        self.traverse_cap.clone()
    }

    /// For a literal cap, the file's size in bytes; `undefined` otherwise.
    #[wasm_bindgen(getter, js_name = literalSize)]
    pub fn literal_size(&self) -> Option<u32> {
        // At most 55 bytes (`LiteralCap::MAX_LEN`), so the conversion never fails.
        self.literal_data
            .as_ref()
            .map(|d| u32::try_from(d.len()).unwrap_or(u32::MAX))
    }
}

impl From<&Cap> for CapInfo {
    fn from(cap: &Cap) -> Self {
        let mut info = Self::describe(cap);
        // One-way derivations, computed here in the tab.
        info.read_only_cap = match cap {
            Cap::DirWrite(c) => Some(c.read_cap().to_string()),
            Cap::MutableWrite(c) => Some(c.read_cap().to_string()),
            _ => None,
        };
        info.traverse_cap = match cap {
            Cap::DirWrite(c) => Some(c.read_cap().traverse_cap().to_string()),
            Cap::DirRead(c) => Some(c.traverse_cap().to_string()),
            Cap::ImmutableDirRead(c) => Some(c.traverse_cap().to_string()),
            _ => None,
        };
        info
    }
}

impl CapInfo {
    fn describe(cap: &Cap) -> Self {
        let kind_name = cap.kind().to_string();
        let text = cap.to_string();
        let verify_cap = cap.verify_cap();
        let storage_index = verify_cap.map(|v| hex::encode(v.storage_index().0));
        let selection_index = verify_cap.map(|v| hex::encode(v.selection_index().0));
        let verify_cap = verify_cap.map(|v| v.to_string());
        match cap {
            Cap::ImmutableRead(_) => Self {
                kind: "readcap",
                kind_name,
                grants: "Read: download, verify and decrypt this file. It also grants everything \
                         the file's verifycap grants (find, check and repair its shares)."
                    .to_owned(),
                can_read: true,
                text,
                storage_index,
                selection_index,
                verify_cap,
                literal_data: None,
                read_only_cap: None,
                traverse_cap: None,
            },
            Cap::ImmutableVerify(_) => Self {
                kind: "verifycap",
                kind_name,
                grants: "Verify: find this file's shares, check that they are intact and repair \
                         them. It does not grant reading the file: it holds no key."
                    .to_owned(),
                can_read: false,
                text,
                storage_index,
                selection_index,
                verify_cap,
                literal_data: None,
                read_only_cap: None,
                traverse_cap: None,
            },
            Cap::Literal(lit) => {
                let len = lit.data().len();
                Self {
                    kind: "literal",
                    kind_name,
                    grants: format!(
                        "Read: this small file ({len} byte{s}) is stored inside the cap itself; \
                         no server holds it.",
                        s = if len == 1 { "" } else { "s" }
                    ),
                    can_read: true,
                    text,
                    storage_index: None,
                    selection_index: None,
                    verify_cap: None,
                    literal_data: Some(lit.data().to_vec()),
                    read_only_cap: None,
                    traverse_cap: None,
                }
            }
            Cap::DirWrite(_)
            | Cap::DirRead(_)
            | Cap::DirTraverse(_)
            | Cap::DirVerify(_)
            | Cap::ImmutableDirRead(_)
            | Cap::ImmutableDirTraverse(_)
            | Cap::ImmutableDirVerify(_) => Self {
                kind: "directory",
                kind_name,
                grants: dir_grants(cap).to_owned(),
                can_read: matches!(
                    cap,
                    Cap::DirWrite(_) | Cap::DirRead(_) | Cap::ImmutableDirRead(_)
                ),
                text,
                storage_index,
                selection_index,
                verify_cap,
                literal_data: None,
                read_only_cap: None,
                traverse_cap: None,
            },
            Cap::MutableWrite(_) | Cap::MutableRead(_) | Cap::MutableVerify(_) => Self {
                kind: "mutable",
                kind_name,
                grants: match cap {
                    Cap::MutableWrite(_) => {
                        "Write: read and change this mutable file (each change is a new signed \
                         version)."
                    }
                    Cap::MutableRead(_) => "Read: the latest version of this mutable file.",
                    _ => {
                        "Verify: find and check this mutable file's shares, without reading \
                         it."
                    }
                }
                .to_owned(),
                can_read: !matches!(cap, Cap::MutableVerify(_)),
                text,
                storage_index,
                selection_index,
                verify_cap,
                literal_data: None,
                read_only_cap: None,
                traverse_cap: None,
            },
            // A kind added to lafs-caps that this API does not describe yet.
            _ => Self {
                kind: "unknown",
                kind_name,
                grants: "This version of lafs cannot say what this kind of cap grants.".to_owned(),
                can_read: false,
                text,
                storage_index,
                selection_index,
                verify_cap,
                literal_data: None,
                read_only_cap: None,
                traverse_cap: None,
            },
        }
    }
}

/// What a directory cap grants, for people.
fn dir_grants(cap: &Cap) -> &'static str {
    match cap {
        Cap::DirWrite(_) => {
            "Write: list this directory, open its files and folders, add files and create \
             folders. Its folders open with write access too."
        }
        Cap::DirRead(_) | Cap::ImmutableDirRead(_) => {
            "Read: list this directory and open its files and folders, without changing \
             anything."
        }
        Cap::DirTraverse(_) | Cap::ImmutableDirTraverse(_) => {
            "Traverse: walk the directory tree to every file's verifycap (to check or repair \
             it) without seeing a name or any content."
        }
        _ => {
            "Verify: find and check this directory's own shares; it shows no entries, names or \
             content."
        }
    }
}

/// Parses a cap in text form (`lafsr1…`, `lafsv1…`, `lafsl1…`) and describes it.
///
/// Strict, like `lafs_caps`: all lowercase or all uppercase, no surrounding whitespace (trim
/// pasted text first), and a checksum that catches typos. Fails with a [`LafsError`] whose `code`
/// says which check failed (for example `"bad-checksum"` for a typo).
#[wasm_bindgen(js_name = parseCap)]
pub fn parse_cap(text: &str) -> Result<CapInfo, LafsError> {
    let cap: Cap = text.parse()?;
    Ok(CapInfo::from(&cap))
}

/// A share link's fragment, split into its parts.
///
/// A share link is `https://<host serving the web app>/#<cap>[&grid=<grid>]`: the cap sits in the
/// URL fragment, which browsers never send to a server.
#[wasm_bindgen]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareLink {
    cap: CapInfo,
    grid: Option<String>,
}

#[wasm_bindgen]
impl ShareLink {
    /// The cap the link opens.
    #[wasm_bindgen(getter)]
    pub fn cap(&self) -> CapInfo {
        self.cap.clone()
    }

    /// The `grid` parameter exactly as written in the link (no percent-decoding), if any: the
    /// introducer of a self-contained link (`docs/spec/caps.md`, "Share links"), whose storage
    /// servers the page then uses instead of a gateway's.
    #[wasm_bindgen(getter)]
    pub fn grid(&self) -> Option<String> {
        self.grid.clone()
    }
}

/// Parses a share link's URL fragment: `[#]<cap>[&name=value]…`.
///
/// The cap is everything before the first `&` and must be a valid cap ([`parse_cap`]). Of the
/// parameters after it, `grid` is returned (the first one, if repeated) and the others are
/// ignored, so that links made by later versions still open. An empty fragment fails with code
/// `"no-cap-in-link"`.
#[wasm_bindgen(js_name = parseShareLink)]
pub fn parse_share_link(fragment: &str) -> Result<ShareLink, LafsError> {
    let fragment = fragment.strip_prefix('#').unwrap_or(fragment);
    let mut parts = fragment.split('&');
    let cap_text = parts.next().unwrap_or_default();
    if cap_text.is_empty() {
        return Err(Error::NoCapInLink.into());
    }
    let cap = parse_cap(cap_text)?;
    let grid = parts
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| *name == "grid")
        .map(|(_, value)| value.to_owned());
    Ok(ShareLink { cap, grid })
}

#[cfg(test)]
mod tests {
    use super::*;

    const READCAP: &str =
        "lafsr1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0jqgfzyvjz2f389q5j52ev95hz7f6ss9h";
    const VERIFYCAP: &str =
        "lafsv1zqg3yyc5z5tpwxqergd3c8g7ruszzg3rysjjvfeg9y4zktpd9ch7rjsjvs8ckmmpp9zu2lvz8j3vsdq8kz9";

    #[test]
    fn debug_hides_the_cap() {
        let info = parse_cap(READCAP).unwrap();
        let dbg = format!("{info:?}");
        assert!(!dbg.contains(&READCAP[6..]), "{dbg}");
        assert!(dbg.contains("readcap"));
    }

    #[test]
    fn directory_and_mutable_kinds() {
        let w = lafs_caps::DirWriteCap::new(lafs_caps::SigningSeed::from_bytes([7; 32]));
        let info = parse_cap(&w.to_string()).unwrap();
        assert_eq!(info.kind(), "directory");
        assert!(info.can_read());
        assert!(info.grants().starts_with("Write"));
        assert_eq!(info.read_only_cap().unwrap(), w.read_cap().to_string());
        assert_eq!(
            info.traverse_cap().unwrap(),
            w.read_cap().traverse_cap().to_string()
        );
        let t = parse_cap(&w.read_cap().traverse_cap().to_string()).unwrap();
        assert_eq!(t.kind(), "directory");
        assert!(!t.can_read());
        assert!(t.grants().starts_with("Traverse"));
        let m = lafs_caps::MutableWriteCap::new(lafs_caps::SigningSeed::from_bytes([8; 32]));
        let info = parse_cap(&m.read_cap().to_string()).unwrap();
        assert_eq!(info.kind(), "mutable");
        assert!(info.can_read());
    }

    #[test]
    fn uppercase_is_canonicalised() {
        let info = parse_cap(&READCAP.to_ascii_uppercase()).unwrap();
        assert_eq!(info.text(), READCAP);
    }

    #[test]
    fn share_link_parameters() {
        let link = parse_share_link(&format!("#{READCAP}&x=1&grid=ws://a&grid=ws://b")).unwrap();
        assert_eq!(link.cap().kind(), "readcap");
        assert_eq!(link.grid().as_deref(), Some("ws://a"));

        let link = parse_share_link(VERIFYCAP).unwrap();
        assert_eq!(link.cap().kind(), "verifycap");
        assert_eq!(link.grid(), None);

        for empty in ["", "#", "#&grid=x"] {
            assert_eq!(
                parse_share_link(empty).unwrap_err().code(),
                "no-cap-in-link"
            );
        }
        let typo = format!("#{}x&grid=y", &READCAP[..READCAP.len() - 1]);
        assert_eq!(parse_share_link(&typo).unwrap_err().code(), "bad-checksum");
    }
}
