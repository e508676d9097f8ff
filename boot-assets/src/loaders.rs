//! iPXE loaders shipped by the distribution (Debian's `ipxe` package: `/usr/lib/ipxe`).

use std::path::{Path, PathBuf};

/// The loader files a PXE ROM may be handed, by firmware: UEFI (`snponly.efi` uses the firmware's
/// NIC driver and starts in ~0.1 s under TCG; `ipxe.efi` brings its own), BIOS (`undionly.kpxe`).
pub const KNOWN: [&str; 4] = ["snponly.efi", "ipxe.efi", "undionly.kpxe", "ipxe.pxe"];

/// The known loaders present in `dir`, in [`KNOWN`] order.
pub fn discover(dir: &Path) -> Vec<(String, PathBuf)> {
    KNOWN
        .iter()
        .map(|n| (n.to_string(), dir.join(n)))
        .filter(|(_, p)| p.is_file())
        .collect()
}
