//! A software TPM 2.0 per VM: `swtpm socket --tpm2` (Debian's `swtpm`), its state in a
//! directory of its own, its control channel a Unix socket QEMU connects to
//! (`-chardev socket … -tpmdev emulator … -device tpm-crb`). Started by the lab as its child,
//! ended by PID when the VM is done, and its state directory removed: each power-on of a VM
//! gets a fresh TPM (PCRs start from zero at every boot anyway; nothing in the lab keeps keys
//! in the TPM across power cycles).
//!
//! What it gives the guest (kernel 6.1, `tpm` and `tpm_crb` built in):
//! `/sys/class/tpm/tpm0/pcr-sha256/<n>`. OVMF measures the Secure Boot policy (the
//! SecureBoot, PK, KEK, db and dbx variables) into PCR 7; systemd-stub measures the UKI's
//! sections into PCR 11.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A running swtpm; ends it and removes its state on drop.
pub struct SwTpm {
    child: Child,
    dir: PathBuf,
    /// The control socket QEMU's `-chardev socket,path=` names.
    pub socket: PathBuf,
}

impl SwTpm {
    /// Starts swtpm with its state in `dir` (created; must not be in use) and waits, at most
    /// 10 s, for its control socket to appear.
    pub fn start(dir: &Path) -> anyhow::Result<SwTpm> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("swtpm.sock");
        let log = std::fs::File::create(dir.with_extension("swtpm.log"))?;
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", dir.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting swtpm (package swtpm): run `sudo lab setup`")?;
        let mut tpm = SwTpm {
            child,
            dir: dir.to_path_buf(),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tpm.socket.exists() {
            if let Ok(Some(status)) = tpm.child.try_wait() {
                bail!(
                    "swtpm exited ({status}): {}",
                    crate::vm::tail(&dir.with_extension("swtpm.log"), 10)
                );
            }
            if Instant::now() > deadline {
                bail!("swtpm made no control socket in 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(tpm)
    }

    /// QEMU's arguments for a CRB TPM backed by this swtpm.
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-chardev".into(),
            format!("socket,id=chrtpm,path={}", self.socket.display()),
            "-tpmdev".into(),
            "emulator,id=tpm0,chardev=chrtpm".into(),
            "-device".into(),
            "tpm-crb,tpmdev=tpm0".into(),
        ]
    }
}

impl Drop for SwTpm {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
