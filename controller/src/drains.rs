//! Which drained container instances are the controller's own.
//!
//! A container instance can be `DRAINING` for two reasons the ECS API does not tell apart:
//! the controller drained it because it was idle and surplus, or the ECS agent drained it
//! because EC2 sent a Spot interruption notice (`ECS_ENABLE_SPOT_INSTANCE_DRAINING`), or an
//! operator did. Only the first kind is the controller's to take back when capacity is
//! needed again: an interrupted instance is gone within two minutes (tasks placed there die
//! with it), and the Auto Scaling Group is already replacing it, so terminating it with
//! decrement would make the group scale in a healthy instance to meet the lower count.
//!
//! So the loop remembers the drains it made. The memory lives in the process only: after a
//! restart every drain is someone else's until it has lasted longer than any Spot notice
//! ([`SETTLED_AFTER`]); then it is no interruption, and a drained instance that is idle may
//! be terminated on scale-in as before (never taken back: an operator's drain is theirs).
//! It is bounded: entries go when their instance is no longer drained or no longer in the
//! group, and there are never more than [`MAX_ENTRIES`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::observe::Host;

/// How long a drain the controller did not make must last before it is taken for something
/// other than a Spot interruption: the two-minute notice, with room for the instance's
/// termination to show in the group.
pub const SETTLED_AFTER: Duration = Duration::from_secs(300);

/// Most instances remembered, each kind; far above any group the controller runs.
pub const MAX_ENTRIES: usize = 4096;

/// Where a drained instance's drain came from, as far as the controller knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOrigin {
    /// The controller drained it: it may take it back or terminate it.
    Own,
    /// Drained by someone else for longer than [`SETTLED_AFTER`]: not an interruption; it
    /// may be terminated when idle and surplus, never taken back.
    Settled,
    /// Drained by someone else recently, likely for a Spot notice: left alone, and not
    /// capacity.
    Foreign,
}

/// The drains the controller made, and when it first saw each drain it did not make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainMemory {
    /// Instance id → when the controller drained it.
    own: BTreeMap<String, Duration>,
    /// Instance id → when a drain the controller did not make was first seen.
    foreign: BTreeMap<String, Duration>,
}

impl DrainMemory {
    /// Brings the memory up to date with the group as a poll saw it at `now`: forgets
    /// instances that are gone or no longer drained, and notes drains it did not make.
    /// `None` (the listing failed) changes nothing.
    pub fn observe(&mut self, hosts: Option<&[Host]>, now: Duration) {
        let Some(hosts) = hosts else {
            return;
        };
        let drained: Vec<&str> = hosts
            .iter()
            .filter(|h| h.draining())
            .map(|h| h.instance_id.as_str())
            .collect();
        self.own.retain(|id, _| drained.contains(&id.as_str()));
        self.foreign.retain(|id, _| drained.contains(&id.as_str()));
        for id in drained {
            if !self.own.contains_key(id) && !self.foreign.contains_key(id) {
                insert_bounded(&mut self.foreign, id, now);
            }
        }
    }

    /// The controller's drain of `instance_id` went through at `now`.
    pub fn drained(&mut self, instance_id: &str, now: Duration) {
        self.foreign.remove(instance_id);
        insert_bounded(&mut self.own, instance_id, now);
    }

    /// The instance is no longer drained by the controller (taken back or terminated).
    pub fn released(&mut self, instance_id: &str) {
        self.own.remove(instance_id);
    }

    /// Where the drain of `instance_id` came from, at `now`.
    pub fn origin(&self, instance_id: &str, now: Duration) -> DrainOrigin {
        if self.own.contains_key(instance_id) {
            return DrainOrigin::Own;
        }
        match self.foreign.get(instance_id) {
            Some(&seen) if now.saturating_sub(seen) >= SETTLED_AFTER => DrainOrigin::Settled,
            _ => DrainOrigin::Foreign,
        }
    }

    /// Instances remembered (own and foreign).
    pub fn len(&self) -> usize {
        self.own.len() + self.foreign.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Inserts `id` at `at`, dropping the oldest entry first when the map is full.
fn insert_bounded(map: &mut BTreeMap<String, Duration>, id: &str, at: Duration) {
    if map.len() >= MAX_ENTRIES && !map.contains_key(id) {
        let oldest = map
            .iter()
            .min_by_key(|&(_, &t)| t)
            .map(|(id, _)| id.clone());
        if let Some(oldest) = oldest {
            map.remove(&oldest);
        }
    }
    map.insert(id.to_owned(), at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::host;

    const T0: Duration = Duration::from_secs(1000);

    #[test]
    fn only_drains_the_controller_made_are_its_own() {
        let mut memory = DrainMemory::default();
        let hosts = [host("i-1", "DRAINING", 0), host("i-2", "DRAINING", 0)];
        memory.drained("i-1", T0);
        memory.observe(Some(&hosts), T0);
        assert_eq!(memory.origin("i-1", T0), DrainOrigin::Own);
        assert_eq!(memory.origin("i-2", T0), DrainOrigin::Foreign);
        // A foreign drain that outlasts any Spot notice is not an interruption.
        let later = T0 + SETTLED_AFTER;
        memory.observe(Some(&hosts), later);
        assert_eq!(memory.origin("i-2", later), DrainOrigin::Settled);
        assert_eq!(memory.origin("i-1", later), DrainOrigin::Own);
    }

    #[test]
    fn instances_no_longer_drained_or_gone_are_forgotten() {
        let mut memory = DrainMemory::default();
        memory.drained("i-1", T0);
        memory.drained("i-2", T0);
        memory.observe(Some(&[host("i-3", "DRAINING", 0)]), T0);
        assert_eq!(memory.len(), 1, "i-1 and i-2 are gone, i-3 is noted");
        memory.observe(Some(&[host("i-3", "ACTIVE", 0)]), T0);
        assert!(memory.is_empty());
        // A failed listing forgets nothing.
        memory.drained("i-4", T0);
        memory.observe(None, T0);
        assert_eq!(memory.origin("i-4", T0), DrainOrigin::Own);
        memory.released("i-4");
        assert_eq!(memory.origin("i-4", T0), DrainOrigin::Foreign);
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut memory = DrainMemory::default();
        for n in 0..MAX_ENTRIES + 10 {
            memory.drained(&format!("i-{n}"), Duration::from_secs(n as u64));
        }
        assert_eq!(memory.len(), MAX_ENTRIES);
        // The oldest went first.
        assert_eq!(memory.origin("i-0", T0), DrainOrigin::Foreign);
        let newest = format!("i-{}", MAX_ENTRIES + 9);
        assert_eq!(memory.origin(&newest, T0), DrainOrigin::Own);
    }
}
