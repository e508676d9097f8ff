//! The one error type of the inventory crate.

use crate::lifecycle::{State, Transition};

/// Everything the inventory can refuse or fail at. Variants carry the offending value so that the
/// API and CLI can tell an operator exactly what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A MAC address that is not six octets in one of the accepted spellings.
    #[error("invalid MAC address {input:?}: {why} (use aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff)")]
    BadMac {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A field of a machine or profile that fails validation.
    #[error("invalid {field} {value:?}: {why}")]
    Invalid {
        /// The field's name as the API spells it (`hostname`, `labels`, …).
        field: &'static str,
        /// The refused value, cut to [`MAX_ECHO`] characters.
        value: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// A text field longer than its limit.
    #[error("{field} is {len} bytes long; at most {max} bytes are allowed")]
    TooLong {
        /// The field's name as the API spells it.
        field: &'static str,
        /// Its length (bytes).
        len: usize,
        /// The limit (bytes).
        max: usize,
    },
    /// The lifecycle state machine does not allow this step.
    #[error("machine is {from}: cannot {transition}")]
    IllegalTransition {
        /// The machine's state.
        from: State,
        /// The refused step.
        transition: Transition,
    },
    /// A machine with this MAC is not in the inventory.
    #[error("no machine with MAC {mac}")]
    MachineNotFound {
        /// The MAC looked for (canonical form).
        mac: String,
    },
    /// A machine with this MAC already exists.
    #[error("machine {mac} already exists")]
    MachineExists {
        /// The MAC of the existing machine (canonical form).
        mac: String,
    },
    /// Another machine already holds this DHCP reservation.
    #[error("IP {ip} is already reserved for machine {holder}")]
    IpReserved {
        /// The reserved address.
        ip: std::net::Ipv4Addr,
        /// The MAC of the machine holding the reservation.
        holder: String,
    },
    /// A DHCP client other than this machine holds a lease on the address right now.
    #[error("IP {ip} is leased to {holder} until {until}; reserve it once that lease has ended or the client released it, or choose another address")]
    IpLeased {
        /// The leased address.
        ip: std::net::Ipv4Addr,
        /// The client holding the lease (its MAC or client identifier).
        holder: String,
        /// When the lease ends.
        until: crate::Timestamp,
    },
    /// Another machine already holds this SMBIOS UUID: a UUID names one machine, or a
    /// `config?uuid=` look-up could hand one machine's config to another.
    #[error("UUID {uuid} already belongs to machine {holder}")]
    UuidTaken {
        /// The UUID (canonical lowercase form).
        uuid: String,
        /// The MAC of the machine holding it.
        holder: String,
    },
    /// Several machines of a store written before UUIDs were unique hold this UUID; a look-up
    /// by it is refused until the operator removes the UUID from all but one.
    #[error("UUID {uuid} is held by several machines ({holders}); remove it from all but one")]
    UuidAmbiguous {
        /// The UUID (canonical lowercase form).
        uuid: String,
        /// The MACs of the machines holding it, comma-separated.
        holders: String,
    },
    /// A machine names a profile that does not exist.
    #[error("unknown profile {name:?}: create it first with `provisioner profiles add {name}`")]
    UnknownProfile {
        /// The profile name the machine names.
        name: String,
    },
    /// No profile with this name.
    #[error("no profile named {name:?}")]
    ProfileNotFound {
        /// The name looked for.
        name: String,
    },
    /// A profile with this name already exists.
    #[error("profile {name:?} already exists")]
    ProfileExists {
        /// The existing profile's name.
        name: String,
    },
    /// A profile cannot be removed while machines use it.
    #[error("profile {name:?} is used by {count} machine(s), e.g. {example}")]
    ProfileInUse {
        /// The profile's name.
        name: String,
        /// How many machines use it.
        count: usize,
        /// The MAC of one of them.
        example: String,
    },
    /// The database file was written by a newer version of this program.
    #[error("{}: store schema version {found} is newer than this program supports ({supported}): a newer provisioner wrote it; run that version (or a newer one), or restore a backup this version wrote", path.display())]
    SchemaTooNew {
        /// The store file.
        path: std::path::PathBuf,
        /// The schema version in the file.
        found: u64,
        /// The newest version this program reads.
        supported: u64,
    },
    /// A store file that cannot be used as it is: damaged (fails the integrity check, not a
    /// store at all), empty although it existed, owned by another user, or not readable and
    /// writable by this one. The server refuses to start on it rather than serve a partial or
    /// empty inventory.
    #[error("{}: {problem}; {advice}", path.display())]
    StoreFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What the operator can do.
        advice: String,
    },
    /// A record in the store could not be decoded.
    #[error("corrupt record in table {table}: {detail}")]
    Corrupt {
        /// The table holding the record.
        table: &'static str,
        /// What failed to decode.
        detail: String,
    },
    /// The file system holding the store is full (`ENOSPC`, or the user's quota is used up:
    /// `EDQUOT`), so a write could not be made durable. The write was refused (a DHCP ACK is
    /// not sent, an API call answers 507); the store re-opens its file and works again as soon
    /// as space is freed, without a restart.
    #[error("{}: no space left on the file system holding the data directory ({detail}); the write did not complete: free space under {} (delete files there, or unused assets with `provisioner assets gc --unreferenced`), then retry", dir.display(), dir.display())]
    DiskFull {
        /// The directory of the store file that could not be written (the data directory).
        dir: std::path::PathBuf,
        /// What the OS said.
        detail: String,
    },
    /// The storage engine failed (I/O, corruption, lock held by another process). The engine's
    /// own error is rendered to text here, so no backend's types appear in this crate's API.
    #[error("storage: {0}")]
    Storage(String),
    /// A shared store cannot be reached now: its cluster is down, has no leader, or did not
    /// answer within the store's timeout. Nothing was written by this call (or, for a write
    /// whose answer was lost, it may have been: see the backend). Retry later; the API answers
    /// 503 (`store_unavailable`).
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    pub(crate) fn invalid(
        field: &'static str,
        value: impl Into<String>,
        why: &'static str,
    ) -> Self {
        Error::Invalid {
            field,
            value: excerpt(&value.into(), MAX_ECHO),
            why,
        }
    }
}

/// How much of a refused value an error message repeats (characters).
pub const MAX_ECHO: usize = 200;

/// `value` as it may be echoed in an error message: unchanged up to `max` characters, otherwise
/// its first `max` characters, an ellipsis and the original length — so a 10 MB bad value costs
/// a 10 MB request, not also a 10 MB answer and log line.
pub fn excerpt(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        None => value.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &value[..cut], value.len()),
    }
}

/// The inventory's result type: [`Error`] unless told otherwise.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_in_messages() {
        assert_eq!(excerpt("short", 200), "short");
        let long = "é".repeat(10_000);
        let cut = excerpt(&long, 200);
        assert!(cut.starts_with(&"é".repeat(200)));
        assert!(cut.ends_with("… (20000 bytes in all)"), "{cut}");
        let msg = Error::invalid("hostname", "x".repeat(10_000_000), "too long").to_string();
        assert!(msg.len() < 400, "{} bytes", msg.len());
        assert!(msg.contains("(10000000 bytes in all)"), "{msg}");
    }
}
