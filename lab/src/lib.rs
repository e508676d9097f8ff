//! The lab: network namespaces and QEMU VMs (OVMF and SeaBIOS, with iPXE) that really netboot
//! through the provisioner, install to a disk, register, reboot and come up from that disk.
//!
//! # Layout
//! - [`setup`]: installs QEMU, OVMF, iPXE and tools from Debian; unpacks a kernel into the cache.
//! - [`cpio`]: the initramfs archive writer.
//! - [`images`]: the installer UKI and the installed-OS disk images (UEFI and BIOS), cached.
//! - [`netns`]: the namespace, bridge, taps and the optional site-DHCP namespace (or, for HA,
//!   one namespace per provisioner).
//! - [`vm`]: QEMU under TCG with a timestamped serial log, per firmware path.
//! - [`secure_boot`]: the lab's own PK, KEK and db, the OVMF variable store with them enrolled,
//!   UKIs signed with the db key.
//! - [`tpm`]: a software TPM (swtpm) per VM.
//! - [`console_report`]: Secure Boot state, PCRs and firmware refusals read from a console log.
//! - [`scenario`]: one run: provisioner, machines, VMs, flows (register, discover+approve,
//!   reprovision), outcome from the inventory.
//! - [`ha_run`]: `lab run --ha`, two provisioners on one etcd, the one that ACKed the first VM
//!   killed right after that ACK.
//! - [`impair`]: loss, delay and reordering per frame (what netem would do; this kernel has
//!   none), sans-IO.
//! - [`impair_link`]: `lab run --impair`, the forwarder between the servers' bridge and the VMs'
//!   that applies it.
//! - [`dhcp_watch`]: DHCP ACKs seen on the lab bridge (a packet socket).
//! - [`storm`]: `lab storm`, thousands of simulated machines netbooting at once against the
//!   provisioner or the dnsmasq + nginx reference, with a per-phase report.

// The lab is a test tool: it measures wall time (power-on to ready) and sets deadlines.
#![allow(clippy::disallowed_methods)]

pub mod console_report;
pub mod cpio;
pub mod dhcp_watch;
pub mod ha_run;
pub mod http6;
pub mod https_boot;
pub mod images;
pub mod impair;
pub mod impair_link;
pub mod netns;
pub mod scenario;
pub mod secure_boot;
pub mod setup;
pub mod storm;
pub mod tpm;
pub mod vm;

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT/SIGTERM into a flag the run loop checks, so a Ctrl-C still tears everything down
/// (namespaces, VMs, the provisioner) through the normal drop path.
pub fn catch_interrupts() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
