//! How big the group's warm pool should be, when the controller manages it
//! (`manage_warm_pool = true` in the pool's config; off by default).
//!
//! A stopped warm-pool instance costs only its volumes (a 30 GB gp3 root volume is about
//! $0.0033 an hour, 1/27 of a running c7i.large), and it turns a cold start (boot and user
//! data, ~90 s) into a warm one (~30 s). So the pool is sized to absorb the cold starts the
//! learned arrival rate brings within the latency target: the work that arrives during one
//! cold start, in instances' worth of slots, and at least one instance (a pool that is
//! always there costs about $2.40 a month). It never exceeds the pool's instance ceiling,
//! and it is set as both `MinSize` and `MaxGroupPreparedCapacity`, so Auto Scaling keeps
//! exactly that many stopped instances whatever the desired capacity.
//!
//! Pure: the loop calls [`planned`] after the scaling plan and makes the one call it
//! returns.

use crate::config::Pool;
use crate::observe::PoolSnapshot;
use crate::plan::Action;
use crate::policy::{PoolPolicy, WarmPoolSize};

/// The warm pool a pool should keep: enough stopped instances to take the arrivals of one
/// cold start at the learned rate (`arrivals_per_sec`), at least 1, at most
/// `max_instances`.
pub fn size(policy: &PoolPolicy, arrivals_per_sec: f64) -> WarmPoolSize {
    let slots = f64::from(
        policy
            .tasks_per_instance
            .saturating_mul(policy.slots_per_task),
    )
    .max(1.0);
    let during_cold_start = arrivals_per_sec.max(0.0) * policy.cold_start.as_secs_f64();
    let needed = if during_cold_start.is_finite() {
        (during_cold_start / slots).ceil().min(f64::from(u32::MAX)) as u32
    } else {
        policy.max_instances
    };
    let n = needed.clamp(1, policy.max_instances.max(1));
    WarmPoolSize {
        min_size: n,
        max_group_prepared_capacity: Some(n),
    }
}

/// The `PutWarmPool` call that brings the group's warm pool to its size, if the pool is
/// managed, the group has a warm pool (the controller never creates one: the stack decides
/// whether there is one) and it differs.
pub fn planned(pool: &Pool, snapshot: &PoolSnapshot, arrivals_per_sec: f64) -> Option<Action> {
    let current = snapshot.observation.warm_pool?;
    if !pool.manage_warm_pool {
        return None;
    }
    let wanted = size(&pool.policy, arrivals_per_sec);
    (wanted != current).then(|| Action::PutWarmPool {
        auto_scaling_group: pool.auto_scaling_group.clone(),
        from: current,
        to: wanted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{pool, snapshot};

    #[test]
    fn the_pool_covers_one_cold_start_of_arrivals_within_bounds() {
        let policy = PoolPolicy::default();
        // No arrivals learned yet: one instance, the cheapest insurance.
        assert_eq!(size(&policy, 0.0).min_size, 1);
        // One file a minute over a 105 s cold start: 1.75 files, inside one instance.
        assert_eq!(size(&policy, 1.0 / 60.0).min_size, 1);
        // One a second: 105 files, 4 slots an instance: 27, capped at the 10 instances.
        assert_eq!(size(&policy, 1.0).min_size, policy.max_instances);
        assert_eq!(size(&policy, f64::INFINITY).min_size, policy.max_instances);
        // No usable rate is no rate learned.
        assert_eq!(size(&policy, f64::NAN).min_size, 1);
        // Monotone in the rate.
        let mut last = 0;
        for per_hour in 0..2000 {
            let n = size(&policy, f64::from(per_hour) / 3600.0).min_size;
            assert!(n >= last, "{per_hour}/h");
            last = n;
        }
        let s = size(&policy, 0.1);
        assert_eq!(s.max_group_prepared_capacity, Some(s.min_size));
    }

    #[test]
    fn a_call_only_for_a_managed_pool_that_has_a_warm_pool_and_differs() {
        let mut managed = pool();
        managed.manage_warm_pool = true;
        let mut snap = snapshot(0, 0, vec![]);
        assert_eq!(
            planned(&managed, &snap, 0.0),
            None,
            "no warm pool: none made"
        );
        snap.observation.warm_pool = Some(WarmPoolSize {
            min_size: 1,
            max_group_prepared_capacity: Some(2),
        });
        let call = planned(&managed, &snap, 0.0).expect("1/2 -> 1/1");
        assert_eq!(
            call.to_string(),
            "set warm pool of g to min 1, max prepared 1 (was min 1, max prepared 2)"
        );
        snap.observation.warm_pool = Some(size(&managed.policy, 0.0));
        assert_eq!(planned(&managed, &snap, 0.0), None, "already the size");
        assert_eq!(planned(&pool(), &snap, 1.0), None, "not managed");
    }
}
