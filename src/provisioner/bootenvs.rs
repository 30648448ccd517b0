//! Boot environments (SEMANTICS.md §10): `bootenvs/<name>.yml`, shipped inside the binary,
//! each with kernel and initrd locations and an iPXE script template.
//!
//! Templates are Jinja (minijinja). They see `bootenv`, `node` (the node's name, or none
//! for an unknown machine), `mac`, `provisioner_url` (where nodes reach crowbar),
//! `files_url` (where kernels, initrds and installer trees are served), and — in the iPXE
//! template — the rendered `kernel`, `initrd` and `append`. Every value is either validated
//! (node names, MACs) or the operator's own setting, so nothing a node says reaches a
//! script unchecked.

use std::collections::BTreeMap;

use minijinja::Environment;
use rust_embed::Embed;
use serde::{Deserialize, Serialize};

/// The repository's `bootenvs/` folder, embedded at build time.
#[derive(Embed)]
#[folder = "bootenvs/"]
struct Shipped;

/// What unknown machines boot.
pub const DISCOVERY: &str = "sledgehammer";
/// What installed nodes boot.
pub const LOCAL: &str = "local";

/// One boot environment, as its file says.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bootenv {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The operating system an `<os>-install` bootenv installs.
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub initrd: Option<String>,
    /// Kernel command line.
    #[serde(default)]
    pub append: Option<String>,
    /// The iPXE script template.
    pub ipxe: String,
}

impl Bootenv {
    /// An OS installer (`<os>-install`), as opposed to discovery or the local disk.
    pub fn installs(&self) -> bool {
        self.name.ends_with("-install")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootenvError {
    #[error("bootenvs/{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("no bootenv `{0}`")]
    Unknown(String),
    #[error("rendering bootenv `{name}`: {source}")]
    Render {
        name: String,
        #[source]
        source: minijinja::Error,
    },
}

/// Who a boot script is for.
#[derive(Debug, Clone, Serialize)]
pub struct BootTarget {
    /// The node's name; `None` for a machine crowbar does not know.
    pub node: Option<String>,
    /// Lower-case, colon-separated.
    pub mac: String,
}

/// Where nodes reach crowbar and the boot files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootUrls {
    pub provisioner_url: String,
    pub files_url: String,
}

/// Every bootenv crowbar knows, by name.
#[derive(Debug, Clone)]
pub struct Bootenvs {
    by_name: BTreeMap<String, Bootenv>,
}

impl Bootenvs {
    /// The shipped bootenvs, each checked: the name is the file's, the templates compile,
    /// and discovery and local boot exist.
    pub fn shipped() -> Result<Bootenvs, BootenvError> {
        let mut files: Vec<(String, String)> = Shipped::iter()
            .filter(|path| path.ends_with(".yml") && !path.contains('/'))
            .filter_map(|path| {
                let file = Shipped::get(&path)?;
                Some((
                    path.to_string(),
                    String::from_utf8_lossy(&file.data).into_owned(),
                ))
            })
            .collect();
        files.sort();
        Bootenvs::from_files(files)
    }

    /// Bootenvs from `(file name, YAML text)` pairs.
    pub fn from_files(files: Vec<(String, String)>) -> Result<Bootenvs, BootenvError> {
        let mut by_name = BTreeMap::new();
        for (file, text) in files {
            let invalid = |message: String| BootenvError::Invalid {
                file: file.clone(),
                message,
            };
            let bootenv: Bootenv =
                serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            let stem = file.trim_end_matches(".yml");
            if bootenv.name != stem {
                return Err(invalid(format!(
                    "the bootenv is named `{}`, the file `{stem}`",
                    bootenv.name
                )));
            }
            let env = Environment::new();
            for (what, template) in [
                ("kernel", bootenv.kernel.as_deref()),
                ("initrd", bootenv.initrd.as_deref()),
                ("append", bootenv.append.as_deref()),
                ("ipxe", Some(bootenv.ipxe.as_str())),
            ] {
                if let Some(template) = template {
                    env.template_from_str(template)
                        .map_err(|e| invalid(format!("{what}: {e}")))?;
                }
            }
            if !bootenv.ipxe.starts_with("#!ipxe") {
                return Err(invalid("the ipxe template must start with `#!ipxe`".into()));
            }
            by_name.insert(bootenv.name.clone(), bootenv);
        }
        for needed in [DISCOVERY, LOCAL] {
            if !by_name.contains_key(needed) {
                return Err(BootenvError::Invalid {
                    file: format!("{needed}.yml"),
                    message: "missing: crowbar needs it".into(),
                });
            }
        }
        Ok(Bootenvs { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Bootenv> {
        self.by_name.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Bootenv> {
        self.by_name.values()
    }

    /// The iPXE script of bootenv `name` for `target`.
    pub fn render(
        &self,
        name: &str,
        target: &BootTarget,
        urls: &BootUrls,
    ) -> Result<String, BootenvError> {
        let bootenv = self
            .get(name)
            .ok_or_else(|| BootenvError::Unknown(name.to_string()))?;
        let render_error = |source| BootenvError::Render {
            name: name.to_string(),
            source,
        };
        let env = Environment::new();
        let base = minijinja::context! {
            bootenv => name,
            node => target.node,
            mac => target.mac,
            provisioner_url => urls.provisioner_url,
            files_url => urls.files_url,
        };
        let part = |template: &Option<String>| -> Result<String, BootenvError> {
            match template {
                Some(t) => env.render_str(t, &base).map_err(render_error),
                None => Ok(String::new()),
            }
        };
        let (kernel, initrd, append) = (
            part(&bootenv.kernel)?,
            part(&bootenv.initrd)?,
            part(&bootenv.append)?,
        );
        let context = minijinja::context! { kernel, initrd, append, ..base };
        env.render_str(&bootenv.ipxe, context).map_err(render_error)
    }
}

/// A MAC address in its canonical form (lower case, colons), from colon- or dash-separated
/// hex; `None` when it is not one.
pub fn canonical_mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    ok.then(|| parts.join(":").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> BootUrls {
        BootUrls {
            provisioner_url: "http://198.51.100.1:3000".into(),
            files_url: "http://198.51.100.1:3000/files".into(),
        }
    }

    #[test]
    fn the_shipped_bootenvs_load_and_include_two_installers() {
        let envs = Bootenvs::shipped().unwrap();
        let names: Vec<&str> = envs.all().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "local",
                "rocky-9-install",
                "sledgehammer",
                "ubuntu-22.04-install"
            ]
        );
        assert!(envs.get("ubuntu-22.04-install").unwrap().installs());
        assert!(!envs.get("local").unwrap().installs());
    }

    #[test]
    fn discovery_scripts_carry_the_mac_and_kernel_locations() {
        let envs = Bootenvs::shipped().unwrap();
        let target = BootTarget {
            node: None,
            mac: "52:54:00:ab:cd:ef".into(),
        };
        let script = envs.render(DISCOVERY, &target, &urls()).unwrap();
        assert!(script.starts_with("#!ipxe\n"), "{script}");
        assert!(
            script.contains(
                "kernel http://198.51.100.1:3000/files/sledgehammer/vmlinuz rootflags=loop"
            )
        );
        assert!(script.contains("crowbar.mac=52:54:00:ab:cd:ef BOOTIF=01-52-54-00-ab-cd-ef"));
        assert!(script.contains("initrd http://198.51.100.1:3000/files/sledgehammer/initrd.img"));
    }

    #[test]
    fn install_scripts_name_the_node() {
        let envs = Bootenvs::shipped().unwrap();
        let target = BootTarget {
            node: Some("n1.example.com".into()),
            mac: "52:54:00:ab:cd:ef".into(),
        };
        let script = envs.render("rocky-9-install", &target, &urls()).unwrap();
        assert!(script.contains("inst.ks=http://198.51.100.1:3000/files/rocky-9/kickstart.cfg"));
        assert!(script.contains("crowbar.node=n1.example.com"));
        let local = envs.render("local", &target, &urls()).unwrap();
        assert!(local.contains("sanboot --no-describe --drive 0x80"));
        assert!(matches!(
            envs.render("nope", &target, &urls()),
            Err(BootenvError::Unknown(_))
        ));
    }

    #[test]
    fn bad_bootenv_files_are_refused() {
        let local = (
            "local.yml".to_string(),
            "name: local\nipxe: \"#!ipxe\\nexit\"\n".to_string(),
        );
        let sledge = (
            "sledgehammer.yml".to_string(),
            "name: sledgehammer\nipxe: \"#!ipxe\\nboot\"\n".to_string(),
        );
        assert!(Bootenvs::from_files(vec![local.clone(), sledge.clone()]).is_ok());
        let misnamed = (
            "other.yml".to_string(),
            "name: x\nipxe: \"#!ipxe\"\n".to_string(),
        );
        let broken = (
            "x.yml".to_string(),
            "name: x\nipxe: \"#!ipxe {{ \"\n".to_string(),
        );
        let not_ipxe = ("x.yml".to_string(), "name: x\nipxe: \"boot\"\n".to_string());
        for bad in [misnamed, broken, not_ipxe] {
            assert!(Bootenvs::from_files(vec![local.clone(), sledge.clone(), bad]).is_err());
        }
        assert!(
            Bootenvs::from_files(vec![local]).is_err(),
            "discovery is required"
        );
    }

    #[test]
    fn macs_are_canonical() {
        assert_eq!(
            canonical_mac("52-54-00-AB-cd-ef").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(
            canonical_mac("52:54:00:ab:cd:ef").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:eg",
            "5254.00ab.cdef",
            "52:54:00:ab:cd:ef:01",
        ] {
            assert_eq!(canonical_mac(bad), None, "{bad}");
        }
    }
}
