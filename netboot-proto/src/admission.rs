//! The admission rule for machines the inventory does not know (`discover`, `auto`), sans-IO:
//! at most [`Limits::max_waiting`] unclaimed records ([`unclaimed`]) and at most
//! [`Limits::per_minute`] new ones a minute. The `provisioner` crate's `admission` module counts
//! records in the store and creates the admitted ones; DHCP and HTTP boot share it.

use inventory::{EventKind, Lifecycle, Mac, Machine, MachineSpec, State, Timestamp};

use crate::boot_decision::UnknownPolicy;

/// How long a count of unclaimed records taken from the store is trusted (milliseconds). Between
/// counts the gate adds its own admissions, so the count can only be too high (an operator's
/// approvals are seen at the next count), never too low.
pub const RECOUNT_MS: u64 = 15_000;
/// At most one warning about refusals per this long (milliseconds).
pub const WARN_EVERY_MS: u64 = 60_000;

pub use crate::rate::TokenBucket;

/// The validated `dhcp.max_discovered` and `dhcp.discover_rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Unclaimed records at most; at this count strangers are no longer recorded.
    pub max_waiting: usize,
    /// New records per minute (also the burst).
    pub per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_waiting: 1000,
            per_minute: 120,
        }
    }
}

/// Why a stranger was not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_waiting` unclaimed records exist.
    Cap,
    /// More than `per_minute` new records in the last minute.
    Rate,
}

impl Refusal {
    /// The refusal's name for the log: `cap` or `rate`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Cap => "cap",
            Refusal::Rate => "rate",
        }
    }
}

/// The gate's answer for one stranger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Record it: the gate has counted it as one more unclaimed record.
    Admit,
    /// Not recorded; `warn` is set at most once per [`WARN_EVERY_MS`].
    Refuse {
        /// Which limit refused it.
        why: Refusal,
        /// Whether to log a warning now (the first refusal in [`WARN_EVERY_MS`]).
        warn: bool,
    },
}

pub use crate::boot_decision::unclaimed;

/// The sans-IO admission decision.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    /// Unclaimed records: the last count from the store plus admissions since.
    waiting: usize,
    counted_at: Option<Timestamp>,
    bucket: TokenBucket,
    warned_at: Option<Timestamp>,
}

impl Gate {
    /// A gate that has not counted yet ([`Gate::needs_count`] is true) with a full token bucket of
    /// `limits.per_minute` tokens.
    pub fn new(limits: Limits) -> Gate {
        Gate {
            limits,
            waiting: 0,
            counted_at: None,
            bucket: TokenBucket::new(limits.per_minute, limits.per_minute),
            warned_at: None,
        }
    }

    /// Whether the caller should count unclaimed records in the store (then [`Gate::counted`]).
    pub fn needs_count(&self, now: Timestamp) -> bool {
        self.counted_at
            .is_none_or(|t| now.0.saturating_sub(t.0) >= RECOUNT_MS)
    }

    /// Takes `waiting`, the number of unclaimed records the caller counted in the store at `now`;
    /// trusted for [`RECOUNT_MS`].
    pub fn counted(&mut self, waiting: usize, now: Timestamp) {
        self.waiting = waiting;
        self.counted_at = Some(now);
    }

    /// Unclaimed records as the gate knows them.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// The limits the gate was made with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Decides about one stranger; an admission counts as one more unclaimed record.
    pub fn check(&mut self, now: Timestamp) -> Verdict {
        let why = if self.waiting >= self.limits.max_waiting {
            Refusal::Cap
        } else if !self.bucket.take(now) {
            Refusal::Rate
        } else {
            self.waiting += 1;
            return Verdict::Admit;
        };
        let warn = self
            .warned_at
            .is_none_or(|t| now.0.saturating_sub(t.0) >= WARN_EVERY_MS);
        if warn {
            self.warned_at = Some(now);
        }
        Verdict::Refuse { why, warn }
    }
}

/// What a stranger told about itself (DHCP option 97 and 93; HTTP boot knows only the MAC).
#[derive(Clone, Debug)]
pub struct Newcomer {
    /// Its MAC: the DHCP `chaddr`, or for HTTP boot the machine the server's own evidence names.
    pub mac: Mac,
    /// SMBIOS UUID from option 97, lower-case hyphenated.
    pub uuid: Option<String>,
    /// Client system architecture (option 93).
    pub arch: Option<u16>,
    /// `dhcp` or `http`, for the log.
    pub via: &'static str,
}

/// The record an admitted stranger becomes, and how it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// `discovered` under `discover`, `registered` under `auto`; its UUID only when no other
    /// machine holds it.
    pub machine: Machine,
    /// Who created it, for the `created` event: the policy's name.
    pub by: &'static str,
    /// A note to append when the UUID it sent is another machine's (so it was not recorded).
    pub note: Option<EventKind>,
}

/// The record `who` becomes under `policy` (`None` under `ignore`). `uuid_holder` answers which
/// machine holds a UUID: a stranger never takes a registered machine's UUID (option 97 is as
/// forgeable as the MAC), it gets a note instead.
pub fn record_for(
    who: &Newcomer,
    policy: UnknownPolicy,
    uuid_holder: &dyn Fn(&str) -> Option<Mac>,
    now: Timestamp,
) -> Option<Admitted> {
    let by = match policy {
        UnknownPolicy::Ignore => return None,
        UnknownPolicy::Discover => "discover",
        UnknownPolicy::Auto => "auto",
    };
    let mut note = None;
    let uuid = match &who.uuid {
        Some(u) => match uuid_holder(u) {
            Some(holder) if holder != who.mac => {
                note = Some(EventKind::Note {
                    message: format!(
                        "SMBIOS UUID {u} (DHCP option 97) is held by {holder}; not recorded here"
                    ),
                });
                None
            }
            _ => Some(u.clone()),
        },
        None => None,
    };
    let spec = MachineSpec {
        uuid,
        ..Default::default()
    };
    let mut machine = Machine::registered(who.mac, spec, now);
    machine.arch = who.arch;
    if policy == UnknownPolicy::Discover {
        machine.lifecycle = Lifecycle::new(State::Discovered, now);
    }
    Some(Admitted { machine, by, note })
}

/// What the gate said about one stranger: `Ok(Some(record))` to create, `Ok(None)` under
/// `ignore`, or the refusal and its (rate-limited) warning for the log.
pub type Outcome = Result<Option<Admitted>, (Refusal, Option<String>)>;

/// The gate's verdict, its warning and the record, for one stranger (see [`Gate::check`] and
/// [`record_for`]): `Ok(record)` when admitted (`Ok(None)` under `ignore`, which never touches
/// the gate), `Err((refusal, warning))` when refused. The warning, at most one per
/// [`WARN_EVERY_MS`], is for the operator's log; it names the count waiting and the limits.
pub fn admit(
    gate: &mut Gate,
    who: &Newcomer,
    policy: UnknownPolicy,
    uuid_holder: &dyn Fn(&str) -> Option<Mac>,
    now: Timestamp,
) -> Outcome {
    if policy == UnknownPolicy::Ignore {
        return Ok(None);
    }
    match gate.check(now) {
        Verdict::Admit => Ok(record_for(who, policy, uuid_holder, now)),
        Verdict::Refuse { why, warn } => {
            let Limits {
                max_waiting,
                per_minute,
            } = gate.limits();
            let warning = warn.then(|| {
                format!(
                    "unknown machines are not being recorded ({} refused via {}: {}, {} waiting, \
                     dhcp.max_discovered {max_waiting}, dhcp.discover_rate {per_minute}/min); \
                     approve or delete discovered machines to make room",
                    who.mac,
                    who.via,
                    why.label(),
                    gate.waiting(),
                )
            });
            Err((why, warning))
        }
    }
}
