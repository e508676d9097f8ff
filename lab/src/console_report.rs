//! What a VM's serial console says about trusted boot, read back after the run: the installer's
//! own report (`LAB-INSTALLER: secure-boot true|false`, `LAB-INSTALLER: pcr N <hex>`, see
//! `guest/installer-init.sh`) and the firmware refusing an image ("Access Denied", EDK2's text
//! for `EFI_SECURITY_VIOLATION` from `LoadImage`). Sans-IO: [`ConsoleReport::parse`] takes the
//! log's text.

use std::collections::BTreeMap;

use serde::Serialize;

/// Trusted-boot facts from one console log; the last report wins (a reprovision boots the
/// installer twice).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleReport {
    /// What the installer read from the SecureBoot EFI variable; `None`: it never said.
    pub secure_boot: Option<bool>,
    /// PCR index → SHA-256 bank value, lower-case hex, as the installer read it from sysfs.
    pub pcrs: BTreeMap<String, String>,
    /// The firmware refused to start an image: "Access Denied" on the console.
    pub firmware_refused: bool,
}

const INSTALLER: &str = "LAB-INSTALLER: ";

impl ConsoleReport {
    /// Reads a serial log (`[  12.345] line` per line, as [`crate::vm`] writes it).
    pub fn parse(log: &str) -> ConsoleReport {
        let mut r = ConsoleReport::default();
        for line in log.lines() {
            if line.contains("Access Denied") {
                r.firmware_refused = true;
            }
            let Some(said) = line.split_once(INSTALLER).map(|(_, s)| s) else {
                continue;
            };
            let words: Vec<&str> = said.split_whitespace().collect();
            match words.as_slice() {
                ["secure-boot", v, ..] => r.secure_boot = v.parse().ok(),
                ["pcr", n, hex, ..] if n.parse::<u8>().is_ok() => {
                    r.pcrs.insert(n.to_string(), hex.to_string());
                }
                _ => {}
            }
        }
        r
    }

    /// From a log file; an unreadable file reports nothing.
    pub fn read(path: &std::path::Path) -> ConsoleReport {
        ConsoleReport::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_installers_report_and_the_firmwares_refusal() {
        let h = "a".repeat(64);
        let log = format!(
            "[   1.000] BdsDxe: failed to load Boot0001 \"UEFI PXEv4\" from PciRoot(0x0): Access Denied\n\
             [  20.000] LAB-INSTALLER: secure-boot false (uptime 3.1s)\n\
             [  40.000] LAB-INSTALLER: secure-boot true (uptime 3.2s)\n\
             [  40.100] LAB-INSTALLER: pcr 7 {h} (uptime 3.3s)\n\
             [  40.200] LAB-INSTALLER: pcr 11 {} (uptime 3.3s)\n\
             [  40.300] LAB-OS: pcr 9 {h} (uptime 3.3s)\n",
            "b".repeat(64)
        );
        let r = ConsoleReport::parse(&log);
        assert_eq!(r.secure_boot, Some(true));
        assert_eq!(r.pcrs.len(), 2, "{r:?}");
        assert_eq!(r.pcrs["7"], h);
        assert_eq!(r.pcrs["11"], "b".repeat(64));
        assert!(r.firmware_refused);
        let quiet = ConsoleReport::parse("[ 1.0] LAB-INSTALLER: no TPM (uptime 1s)\n");
        assert_eq!(quiet, ConsoleReport::default());
    }
}
