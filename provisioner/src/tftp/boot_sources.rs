//! TFTP sources that know about machines and the asset store:
//! [`InstalledGate`] refuses every file to a machine that is installed (the TFTP leg of "no boot
//! loop"; DHCP already offers such machines no boot file), and [`ImportedLoaders`] serves loaders
//! imported with `provisioner assets import --loader` by their file name.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use boot_assets::{AssetKind, AssetStore};
use inventory::Store;

use super::source::{BlockFile, DiskFile, FileSource, OpenError};
use crate::boot_decision::{decide, Intent, UnknownPolicy};

/// First in the chain: asks the boot decision for the machine holding the client's address by
/// the server's evidence (an active lease or observed binding).
pub struct InstalledGate {
    pub store: Arc<dyn Store>,
}

impl FileSource for InstalledGate {
    fn open(
        &self,
        _path: &str,
        client: SocketAddr,
    ) -> Result<Option<Arc<dyn BlockFile>>, OpenError> {
        let IpAddr::V4(ip) = client.ip() else {
            return Ok(None);
        };
        let io = |e: inventory::Error| OpenError::Io(std::io::Error::other(e.to_string()));
        // Only an active binding says who is asking (an expired one may be a new machine's).
        let holder = crate::identity::holder_of(self.store.as_ref(), ip, crate::app::now());
        let Some(lease) = holder.map_err(io)? else {
            return Ok(None);
        };
        let machine = self.store.machine(lease.mac).map_err(io)?;
        if decide(machine.as_ref(), UnknownPolicy::Ignore) == Intent::LocalDisk {
            return Err(OpenError::Access(format!(
                "{} is installed: boot from disk (provisioner machines reprovision {} to reinstall)",
                lease.mac, lease.mac
            )));
        }
        Ok(None)
    }
}

/// Loaders from the asset store, by the name they were imported under (newest import wins).
pub struct ImportedLoaders {
    pub assets: AssetStore,
}

impl FileSource for ImportedLoaders {
    fn open(
        &self,
        path: &str,
        _client: SocketAddr,
    ) -> Result<Option<Arc<dyn BlockFile>>, OpenError> {
        let io = |e: boot_assets::Error| OpenError::Io(std::io::Error::other(e.to_string()));
        let newest = self
            .assets
            .list()
            .map_err(io)?
            .into_iter()
            .filter(|a| a.kind == AssetKind::Loader && a.name == path)
            .max_by_key(|a| a.imported_ms);
        let Some(meta) = newest else {
            return Ok(None);
        };
        let (_, file_path) = self.assets.file(&meta.digest).map_err(io)?;
        let file = std::fs::File::open(file_path)?;
        let size = file.metadata()?.len();
        Ok(Some(Arc::new(DiskFile { file, size })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::{Lease, Lifecycle, Machine, RedbStore, State, Timestamp};

    #[test]
    fn installed_machines_get_no_file_and_others_pass_through() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.path().join("db")).unwrap());
        let mac = "52:54:00:00:00:07".parse().unwrap();
        let mut m = Machine::registered(mac, Default::default(), Timestamp(0));
        store
            .create_machines(vec![m.clone()], "test", Timestamp(0))
            .unwrap();
        let ip = std::net::Ipv4Addr::new(198, 18, 0, 7);
        store
            .put_leases(&[Lease {
                ip,
                mac,
                expires: Timestamp(u64::MAX / 2),
                hostname: None,
                observed: false,
                client_id: None,
            }])
            .unwrap();
        let gate = InstalledGate {
            store: store.clone(),
        };
        let client = SocketAddr::new(ip.into(), 2000);
        assert!(
            gate.open("snponly.efi", client).unwrap().is_none(),
            "registered: pass"
        );
        store
            .update_machine(mac, Timestamp(1), &mut |x| {
                x.lifecycle = Lifecycle::new(State::Installed, Timestamp(1));
                Ok(vec![])
            })
            .unwrap();
        let Err(OpenError::Access(why)) = gate.open("snponly.efi", client) else {
            panic!("installed machine got a file")
        };
        assert!(why.contains("installed"), "{why}");
        // Strangers (no lease) pass through to the other sources.
        let other = SocketAddr::new(std::net::Ipv4Addr::new(198, 18, 0, 8).into(), 2000);
        assert!(gate.open("snponly.efi", other).unwrap().is_none());
        m.lifecycle.state = State::Ready;
    }

    #[test]
    fn imported_loaders_are_served_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let assets = AssetStore::open(dir.path()).unwrap();
        let src = dir.path().join("undionly.kpxe");
        std::fs::write(&src, b"not really a loader").unwrap();
        assets.import_path(&src, AssetKind::Loader).unwrap();
        let s = ImportedLoaders { assets };
        let client = SocketAddr::from(([127, 0, 0, 1], 1));
        let f = s.open("undionly.kpxe", client).unwrap().expect("served");
        assert_eq!(f.size(), 19);
        assert!(s.open("ipxe.efi", client).unwrap().is_none());
    }
}
