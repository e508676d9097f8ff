//! Per-machine credentials, derived rather than stored: a machine's enrollment token is
//! HMAC-SHA256(server key, MAC + the record's creation time), so it can be rendered into the
//! machine's config at every fetch and checked without a table of secrets. Deleting and
//! re-adding a machine changes it. The registration `apiKey` is derived the same way from the
//! OS's machine-id. The 256-bit server key lives in `<data-dir>/machine-token.key` (mode 0600).
//!
//! Token form: `m1.<12 hex MAC>.<40 hex MAC tag>`; the MAC in clear lets the server find the
//! machine to check the tag against.

use std::path::Path;

use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac as _};
use inventory::{Mac, Machine};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The server key's file name in the data directory: 32 random bytes, mode 0600.
pub const KEY_FILE: &str = "machine-token.key";
/// The name of the server key among the etcd store's shared secrets.
pub const ETCD_KEY_NAME: &str = "machine-token-key";
/// Hex digits of the HMAC kept in a token (160 of its 256 bits).
const TAG_HEX: usize = 40;

/// The server key that derives and checks every machine's tokens.
#[derive(Clone)]
pub struct MachineKeys {
    /// HMAC-SHA256 key; never logged (`Debug` hides it).
    key: [u8; 32],
}

impl std::fmt::Debug for MachineKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MachineKeys(..)")
    }
}

impl MachineKeys {
    /// Keys from a 256-bit server key.
    pub fn new(key: [u8; 32]) -> Self {
        MachineKeys { key }
    }

    /// Reads the key, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<MachineKeys> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(b) if b.len() == 32 => {
                let mut key = [0; 32];
                key.copy_from_slice(&b);
                return Ok(MachineKeys { key });
            }
            Ok(b) => anyhow::bail!(
                "{} holds {} bytes, not 32: remove it to make a new key (every machine token changes)",
                path.display(),
                b.len()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("reading random bytes: {e}"))?;
        crate::operator_token::write_secret(data_dir, KEY_FILE, &key)?;
        Ok(MachineKeys { key })
    }

    /// The key every server sharing an etcd store uses: the one stored there, or a new random
    /// one stored now (create-if-absent, so servers starting together agree). It is stored in
    /// clear in etcd: etcd's TLS and authentication protect it (README "High availability").
    pub fn shared_key(store: &inventory_etcd::EtcdStore) -> anyhow::Result<MachineKeys> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| anyhow::anyhow!("reading random bytes: {e}"))?;
        let stored = store.shared_secret(ETCD_KEY_NAME, &fresh)?;
        let key: [u8; 32] = stored.as_slice().try_into().map_err(|_| {
            anyhow::anyhow!(
                "the machine-token key in etcd ({ETCD_KEY_NAME}) holds {} bytes, not 32",
                stored.len()
            )
        })?;
        Ok(MachineKeys { key })
    }

    /// The first [`TAG_HEX`] hex digits of HMAC-SHA256 (RFC 2104) under the server key over
    /// `parts`, each framed by its length (8 bytes, big-endian) so no two part lists collide.
    fn tag(&self, parts: &[&[u8]]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        let full: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        full[..TAG_HEX].to_string()
    }

    fn token(&self, mac: Mac, purpose: &[u8], value: &[u8]) -> String {
        let hex: String = mac.octets().iter().map(|b| format!("{b:02x}")).collect();
        format!("m1.{hex}.{}", self.tag(&[purpose, &mac.octets(), value]))
    }

    /// The enrollment token rendered into the machine's config: bound to the record's creation
    /// time and its token epoch (epoch 0 keeps the form tokens had before epochs existed).
    pub fn enrollment_token(&self, m: &Machine) -> String {
        let mut value = m.created.0.to_be_bytes().to_vec();
        if m.token_epoch != 0 {
            value.extend_from_slice(&m.token_epoch.to_be_bytes());
        }
        self.token(m.mac, b"enroll", &value)
    }

    /// The `apiKey` answered to a registration with this machine-id.
    pub fn api_key(&self, m: &Machine, machine_id: &str) -> String {
        let mut value = machine_id.as_bytes().to_vec();
        if m.token_epoch != 0 {
            value.extend_from_slice(b"\0");
            value.extend_from_slice(&m.token_epoch.to_be_bytes());
        }
        self.token(m.mac, b"api-key", &value)
    }

    /// The MAC a token names, before it is checked.
    pub fn claimed_mac(token: &str) -> Option<Mac> {
        let mut parts = token.trim().split('.');
        let (Some("m1"), Some(mac), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if tag.len() != TAG_HEX {
            return None;
        }
        mac.parse().ok()
    }

    /// Whether `token` is this machine's enrollment token or its current apiKey.
    pub fn verify(&self, m: &Machine, token: &str) -> bool {
        let token = token.trim();
        let mut ok = constant_time_eq(token, &self.enrollment_token(m));
        if let Some(r) = &m.registration {
            ok |= constant_time_eq(token, &self.api_key(m, &r.machine_id));
        }
        ok
    }
}

/// `a == b` in time that depends on their lengths only, not on where they differ
/// (`subtle`), so a guessed token cannot be refined byte by byte from response times.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory::Timestamp;

    #[test]
    fn tokens_verify_only_for_their_machine_and_key() {
        let keys = MachineKeys::new([7; 32]);
        let a = Machine::registered(
            "52:54:00:00:00:01".parse().unwrap(),
            Default::default(),
            Timestamp(1),
        );
        let b = Machine::registered(
            "52:54:00:00:00:02".parse().unwrap(),
            Default::default(),
            Timestamp(1),
        );
        let t = keys.enrollment_token(&a);
        assert_eq!(MachineKeys::claimed_mac(&t), Some(a.mac));
        assert!(keys.verify(&a, &t));
        assert!(!keys.verify(&b, &t));
        assert!(!MachineKeys::new([8; 32]).verify(&a, &t));
        // A rotation (reprovision, `machines token --rotate`) revokes the old token and apiKey.
        let key = keys.api_key(&a, "os-1");
        let mut rotated = a.clone();
        rotated.registration = Some(inventory::Registration {
            machine_id: "os-1".into(),
            hostname: String::new(),
            agent_version: String::new(),
            addresses: vec![],
            boot_state: "active_boot".into(),
            at: Timestamp(1),
        });
        assert!(keys.verify(&rotated, &key));
        rotated.token_epoch = 1;
        assert!(!keys.verify(&rotated, &t));
        assert!(!keys.verify(&rotated, &key));
        assert!(keys.verify(&rotated, &keys.enrollment_token(&rotated)));
        // Re-created record (new creation time): the old token is dead.
        let mut a2 = a.clone();
        a2.created = Timestamp(2);
        assert!(!keys.verify(&a2, &t));
        assert!(!keys.verify(&a, &t[..t.len() - 1]));
        assert_eq!(MachineKeys::claimed_mac("m1.zz.x"), None);
    }

    /// Tokens already rendered into configs and stored by installed machines must keep
    /// working: these were computed by the first implementation (HMAC written by hand) and pin
    /// the derivation byte for byte, for both token kinds, before and after a rotation.
    #[test]
    fn tokens_are_pinned_for_a_fixed_key() {
        let keys = MachineKeys::new(std::array::from_fn(|i| i as u8));
        let mut m = Machine::registered(
            "52:54:00:12:34:56".parse().unwrap(),
            Default::default(),
            Timestamp(1_700_000_000),
        );
        let got = [
            keys.enrollment_token(&m),
            keys.api_key(&m, "0123456789abcdef0123456789abcdef"),
            {
                m.token_epoch = 3;
                keys.enrollment_token(&m)
            },
            keys.api_key(&m, "0123456789abcdef0123456789abcdef"),
        ];
        assert_eq!(
            got,
            [
                "m1.525400123456.1b19bb95fdc5c00cbccd696a03ee2eb4ec070e9a",
                "m1.525400123456.5dce8ca724b5fdb64ed59e75d08b3323ff370402",
                "m1.525400123456.bb4fd6931391dff8f60ba0a05084e7357d499cb6",
                "m1.525400123456.dc26a440d7a81480593a7b966d3de9773f18800d",
            ]
        );
    }
}
