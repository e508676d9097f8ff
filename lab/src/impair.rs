//! Network impairment for the lab: random loss, a random delay per frame (so frames reorder)
//! and a bounded queue, the part of `tc netem` the lab needs. This kernel has no netem
//! (`tc qdisc add … netem` fails "Specified qdisc kind is unknown"; only tbf/htb and friends),
//! so the lab forwards the frames itself ([`crate::impair_link`]); this module is the decision
//! core, with no sockets and no clock of its own: time comes in as an argument.
//!
//! - [`Impairment`]: what to do, parsed from `loss=10,delay=50ms,jitter=25ms[,queue=2048]`.
//! - [`Shaper`]: one direction of the link. [`Shaper::on_frame`] drops a frame with probability
//!   `loss` %, else queues it until `arrival + d`, `d` drawn uniformly from
//!   `[delay - jitter, delay + jitter]` per frame (so with jitter a later frame can leave first);
//!   a full queue drops the frame. [`Shaper::pop_due`] hands out the frames whose time has come,
//!   earliest first, and counts what left out of order and how long each was held.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What the impaired link does to every frame, in each direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Impairment {
    /// Share of frames dropped at random, percent (0 ≤ loss < 100).
    pub loss_percent: f64,
    /// Mean delay per frame.
    #[serde(serialize_with = "millis")]
    pub delay: Duration,
    /// Half-width of the uniform delay distribution (`delay ± jitter`, never below zero).
    #[serde(serialize_with = "millis")]
    pub jitter: Duration,
    /// Frames held at most per direction; a frame arriving at a full queue is dropped.
    pub queue: usize,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            loss_percent: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            queue: 2048,
        }
    }
}

impl fmt::Display for Impairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss {} %, delay {} ± {} ms, queue {} frames",
            self.loss_percent,
            self.delay.as_millis(),
            self.jitter.as_millis(),
            self.queue
        )
    }
}

/// `loss=10,delay=50ms,jitter=25ms,queue=2048`: any subset, comma-separated; durations in `ms`
/// or `s`; `loss` in percent (a fraction is allowed).
impl FromStr for Impairment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut imp = Impairment::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: key=value (loss, delay, jitter, queue)"))?;
            match key.trim() {
                "loss" => {
                    let v: f64 = value
                        .trim_end_matches('%')
                        .parse()
                        .map_err(|_| format!("loss={value}: a percentage"))?;
                    if !(0.0..100.0).contains(&v) {
                        return Err(format!("loss={value}: from 0 to below 100"));
                    }
                    imp.loss_percent = v;
                }
                "delay" => imp.delay = duration(value).map_err(|e| format!("delay={e}"))?,
                "jitter" => imp.jitter = duration(value).map_err(|e| format!("jitter={e}"))?,
                "queue" => {
                    imp.queue = value
                        .parse()
                        .ok()
                        .filter(|q| (1..=1_000_000).contains(q))
                        .ok_or_else(|| format!("queue={value}: 1 to 1000000 frames"))?;
                }
                other => return Err(format!("{other:?}: one of loss, delay, jitter, queue")),
            }
        }
        if imp.delay + imp.jitter > Duration::from_secs(10) {
            return Err("delay + jitter: at most 10 s".into());
        }
        Ok(imp)
    }
}

fn duration(v: &str) -> Result<Duration, String> {
    let (n, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(format!("{v}: a duration in ms or s (50ms)"));
    };
    let x: f64 = n
        .parse()
        .map_err(|_| format!("{v}: a number, then ms or s"))?;
    if !(0.0..=10.0).contains(&(x * scale)) {
        return Err(format!("{v}: from 0 to 10 s"));
    }
    Ok(Duration::from_secs_f64(x * scale))
}

/// What became of one frame handed to [`Shaper::on_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Dropped at random (the `loss` share).
    Lost,
    /// Dropped because the queue was full.
    Overflow,
    /// Held until this moment.
    Queued(Instant),
}

/// A frame whose time has come, from [`Shaper::pop_due`].
#[derive(Debug)]
pub struct Departure {
    pub frame: Vec<u8>,
    /// Arrival order in this direction (0, 1, …).
    pub seq: u64,
    /// How long it was held (arrival to the `now` it was popped at).
    pub held: Duration,
}

/// Counters of one direction, reported at the end of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DirectionStats {
    /// Frames read from the input side.
    pub frames_in: u64,
    /// Dropped at random.
    pub lost: u64,
    /// Dropped because the queue was full.
    pub overflow: u64,
    /// Handed out to be sent (after their delay).
    pub forwarded: u64,
    /// Of those, sent after a frame that arrived later than they did.
    pub reordered: u64,
    /// Sends the kernel refused (filled in by the link).
    pub send_errors: u64,
    /// Frames the kernel dropped before we read them (`PACKET_STATISTICS`; filled in by the link).
    pub kernel_drops: u64,
    /// Shortest, mean and longest time a forwarded frame was held, milliseconds.
    pub held_min_ms: f64,
    pub held_mean_ms: f64,
    pub held_max_ms: f64,
    /// The most frames queued at once.
    pub queue_peak: usize,
}

#[derive(Debug)]
struct Queued {
    due: Instant,
    seq: u64,
    arrived: Instant,
    frame: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(o.due, o.seq))
    }
}

/// One direction of the impaired link (see the module documentation).
#[derive(Debug)]
pub struct Shaper {
    spec: Impairment,
    rng: fastrand::Rng,
    queue: BinaryHeap<Reverse<Queued>>,
    next_seq: u64,
    /// The highest arrival number handed out so far: a later pop with a lower one is reordered.
    highest_out: Option<u64>,
    held_sum: Duration,
    stats: DirectionStats,
}

impl Shaper {
    /// A shaper drawing its randomness from `seed` (the same seed, arrivals and times give the
    /// same decisions).
    pub fn new(spec: Impairment, seed: u64) -> Shaper {
        Shaper {
            spec,
            rng: fastrand::Rng::with_seed(seed),
            queue: BinaryHeap::new(),
            next_seq: 0,
            highest_out: None,
            held_sum: Duration::ZERO,
            stats: DirectionStats::default(),
        }
    }

    /// A frame read at `now`: dropped, or queued until the returned moment.
    pub fn on_frame(&mut self, frame: Vec<u8>, now: Instant) -> Admit {
        self.stats.frames_in += 1;
        if self.rng.f64() * 100.0 < self.spec.loss_percent {
            self.stats.lost += 1;
            return Admit::Lost;
        }
        if self.queue.len() >= self.spec.queue {
            self.stats.overflow += 1;
            return Admit::Overflow;
        }
        let lo = self.spec.delay.saturating_sub(self.spec.jitter);
        let hi = self.spec.delay + self.spec.jitter;
        let span = (hi - lo).as_nanos() as u64;
        let due = now + lo + Duration::from_nanos(self.rng.u64(0..=span));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Queued {
            due,
            seq,
            arrived: now,
            frame,
        }));
        self.stats.queue_peak = self.stats.queue_peak.max(self.queue.len());
        Admit::Queued(due)
    }

    /// When the next queued frame is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(q)| q.due)
    }

    /// The earliest frame due at or before `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<Departure> {
        if self.next_due()? > now {
            return None;
        }
        let Reverse(q) = self.queue.pop()?;
        let held = now.saturating_duration_since(q.arrived);
        let s = &mut self.stats;
        if s.forwarded == 0 {
            s.held_min_ms = f64::INFINITY;
        }
        s.forwarded += 1;
        self.held_sum += held;
        let ms = held.as_secs_f64() * 1e3;
        s.held_min_ms = s.held_min_ms.min(ms);
        s.held_max_ms = s.held_max_ms.max(ms);
        s.held_mean_ms = self.held_sum.as_secs_f64() * 1e3 / s.forwarded as f64;
        match self.highest_out {
            Some(h) if q.seq < h => s.reordered += 1,
            _ => self.highest_out = Some(q.seq),
        }
        Some(Departure {
            frame: q.frame,
            seq: q.seq,
            held,
        })
    }

    /// Frames waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn stats(&self) -> &DirectionStats {
        &self.stats
    }

    /// For the link to record what happens after a departure.
    pub fn stats_mut(&mut self) -> &mut DirectionStats {
        &mut self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Impairment {
        "loss=10,delay=50ms,jitter=25ms".parse().unwrap()
    }

    #[test]
    fn parses_and_refuses() {
        let s = spec();
        assert_eq!(s.loss_percent, 10.0);
        assert_eq!(s.delay, Duration::from_millis(50));
        assert_eq!(s.jitter, Duration::from_millis(25));
        assert_eq!(s.queue, 2048);
        let q: Impairment = "queue=10,delay=0.2s".parse().unwrap();
        assert_eq!((q.queue, q.delay), (10, Duration::from_millis(200)));
        for bad in [
            "loss=100",
            "loss=-1",
            "loss=x",
            "delay=50",
            "delay=11s",
            "jitter=5ms,delay=9.999s",
            "queue=0",
            "rate=1",
            "loss",
        ] {
            assert!(bad.parse::<Impairment>().is_err(), "{bad}");
        }
    }

    /// 20,000 frames 1 ms apart through loss 10 %, delay 50 ± 25 ms, drained every 1 ms: the
    /// loss share, the delay bounds and mean, and reordering are what the spec says.
    #[test]
    fn loss_delay_and_reordering_follow_the_spec() {
        let t0 = Instant::now();
        let mut sh = Shaper::new(spec(), 7);
        let mut held = Vec::new();
        let mut order = Vec::new();
        let n = 20_000u64;
        for i in 0..n + 100 {
            let now = t0 + Duration::from_millis(i);
            if i < n {
                let a = sh.on_frame(i.to_be_bytes().to_vec(), now);
                if let Admit::Queued(due) = a {
                    let d = due - now;
                    assert!(d >= Duration::from_millis(25) && d <= Duration::from_millis(75));
                }
            }
            while let Some(d) = sh.pop_due(now) {
                held.push(d.held);
                order.push(u64::from_be_bytes(d.frame[..8].try_into().unwrap()));
            }
        }
        let s = sh.stats().clone();
        assert_eq!(s.frames_in, n);
        assert_eq!(s.overflow, 0);
        assert_eq!(s.lost + s.forwarded, n, "{s:?}");
        let loss = s.lost as f64 / n as f64;
        assert!((0.09..0.11).contains(&loss), "loss {loss}");
        // Popped on a 1 ms grid: held within [25, 76) ms, mean near 50.
        assert!(s.held_min_ms >= 25.0 && s.held_max_ms < 76.0, "{s:?}");
        assert!((49.0..52.0).contains(&s.held_mean_ms), "{s:?}");
        // Frames 1 ms apart with 50 ms of spread: most leave out of arrival order.
        let reordered = order.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(reordered > (n / 4) as usize, "{reordered}");
        assert!(s.reordered > n / 4, "{s:?}");
        assert_eq!(held.len() as u64, s.forwarded);
    }

    #[test]
    fn no_jitter_keeps_order_and_a_full_queue_drops() {
        let t0 = Instant::now();
        let spec: Impairment = "delay=10ms,queue=3".parse().unwrap();
        let mut sh = Shaper::new(spec, 1);
        for i in 0..5u8 {
            sh.on_frame(vec![i], t0);
        }
        assert_eq!(sh.queued(), 3);
        assert_eq!(sh.stats().overflow, 2);
        assert!(sh.pop_due(t0 + Duration::from_millis(9)).is_none());
        let late = t0 + Duration::from_millis(10);
        let out: Vec<u8> = std::iter::from_fn(|| sh.pop_due(late).map(|d| d.frame[0])).collect();
        assert_eq!(out, [0, 1, 2]);
        assert_eq!(sh.stats().reordered, 0);
        assert_eq!(sh.stats().held_min_ms, 10.0);
        assert!(sh.next_due().is_none());
    }
}
