//! iPXE scripts, rendered from typed values only. Nothing from a request reaches a script: MACs
//! are our own `Mac` rendering, digests are checked hex, URLs come from configuration or the
//! socket address, and operator text (messages, command lines) passes through [`IpxeText`] or
//! [`Cmdline`], which refuse or replace what iPXE would interpret (`${…}` expansion, `&&`/`||`,
//! quotes, `#`, line breaks).

use std::fmt::Write as _;
use std::time::Duration;

use inventory::Mac;

/// `${platform}` of iPXE: which firmware it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Efi,
    Pcbios,
}

/// Free text shown on the console: anything iPXE might interpret becomes `_`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpxeText(String);

impl IpxeText {
    pub fn new(s: &str) -> Self {
        IpxeText(
            s.chars()
                .take(300)
                .map(|c| {
                    if c.is_ascii_alphanumeric() || " .,:()/_-=+@%'!?<>[]`*~^".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A kernel command line that is safe as iPXE arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmdline(String);

impl Cmdline {
    /// Joins the parts with single spaces; refuses characters iPXE would interpret.
    pub fn join<'a>(parts: impl IntoIterator<Item = &'a str>) -> Result<Cmdline, String> {
        let mut words = Vec::new();
        for p in parts {
            for w in p.split_whitespace() {
                if let Some(bad) = w.chars().find(|c| !Self::allowed(*c)) {
                    return Err(format!(
                        "kernel argument {:?} contains {bad:?}, which iPXE would interpret; remove it from the profile or machine cmdline",
                        IpxeText::new(w).as_str()
                    ));
                }
                words.push(w);
            }
        }
        let joined = words.join(" ");
        if joined.contains("&&") || joined.contains("||") {
            return Err(
                "kernel command line contains && or ||, which iPXE treats as operators".into(),
            );
        }
        Ok(Cmdline(joined))
    }

    fn allowed(c: char) -> bool {
        c.is_ascii_graphic() && !"$\"'#\\`;".contains(c)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked URL (built by [`super::urls`] from typed parts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url(pub(super) String);

impl Url {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a script should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Script {
    /// Ask again with iPXE's `${platform}` filled in (an iPXE that leaves it empty gets a
    /// message and `exit 1`, not an endless loop).
    Dispatch { next: Url },
    /// UEFI: chain the UKI with the full command line (iPXE replaces the embedded one when it
    /// passes arguments, so the embedded `.cmdline` is repeated first).
    /// `retry` is this script's own URL, fetched again after a failed download.
    InstallEfi {
        uki: Url,
        cmdline: Cmdline,
        retry: Url,
    },
    /// BIOS: the UKI's kernel and initrd, extracted.
    InstallBios {
        kernel: Url,
        initrd: Option<Url>,
        cmdline: Cmdline,
        retry: Url,
    },
    /// Boot the local disk (installed machines).
    LocalDisk { platform: Platform },
    /// Show why the machine waits, then ask again.
    Hold {
        message: IpxeText,
        poll: Duration,
        next: Url,
    },
}

impl Script {
    pub fn render(&self, mac: Mac) -> String {
        let mut s = String::from("#!ipxe\n");
        let _ = writeln!(s, "# provisioner: machine {mac}");
        match self {
            Script::Dispatch { next } => {
                // An iPXE that leaves `${platform}` empty would be sent here again at once,
                // forever (an empty parameter is an absent one): it is told what to do instead.
                s.push_str("isset ${platform} || goto no_platform\n");
                let _ = writeln!(s, "chain --replace --autofree {}", next.as_str());
                s.push_str("exit 1\n:no_platform\n");
                s.push_str(
                    "echo provisioner: this iPXE leaves its platform setting empty, so the provisioner cannot tell efi from pcbios\n",
                );
                s.push_str("echo provisioner: chain /boot/ipxe with platform=efi or platform=pcbios added to the URL\n");
                s.push_str("exit 1\n");
            }
            Script::InstallEfi {
                uki,
                cmdline,
                retry,
            } => {
                let _ = writeln!(s, "echo provisioner: installing {mac} (UEFI, UKI)");
                let _ = writeln!(
                    s,
                    "chain --autofree {} {} || goto failed",
                    uki.as_str(),
                    cmdline.as_str()
                );
                fail_block(&mut s, retry);
            }
            Script::InstallBios {
                kernel,
                initrd,
                cmdline,
                retry,
            } => {
                let _ = writeln!(
                    s,
                    "echo provisioner: installing {mac} (BIOS, kernel + initrd from the UKI)"
                );
                let _ = writeln!(
                    s,
                    "kernel {} {} || goto failed",
                    kernel.as_str(),
                    cmdline.as_str()
                );
                if let Some(i) = initrd {
                    let _ = writeln!(s, "initrd {} || goto failed", i.as_str());
                }
                let _ = writeln!(s, "boot || goto failed");
                fail_block(&mut s, retry);
            }
            Script::LocalDisk { platform } => {
                let _ = writeln!(s, "echo provisioner: {mac} is installed, booting from disk");
                match platform {
                    // `exit 0` leaves some UEFI firmware sitting in its boot manager
                    // (tinkerbell#984); a failure makes it try the next boot entry.
                    Platform::Efi => s.push_str("exit 1\n"),
                    Platform::Pcbios => {
                        s.push_str("sanboot --no-describe --drive 0x80 || exit 1\n")
                    }
                }
            }
            Script::Hold {
                message,
                poll,
                next,
            } => {
                let _ = writeln!(s, "echo provisioner: {}", message.as_str());
                let _ = writeln!(s, "echo provisioner: asking again in {} s", poll.as_secs());
                let _ = writeln!(s, "sleep {}", poll.as_secs().max(1));
                let _ = writeln!(s, "chain --replace --autofree {}", next.as_str());
            }
        }
        s
    }
}

fn fail_block(s: &mut String, retry: &Url) {
    s.push_str(":failed\n");
    s.push_str("echo provisioner: download or boot failed, trying again in 10 s\n");
    s.push_str("sleep 10\n");
    let _ = writeln!(s, "chain --replace --autofree {}", retry.as_str());
}

#[cfg(test)]
#[path = "script_tests.rs"]
mod tests;
