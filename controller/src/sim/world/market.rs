//! The purchase side of the world: Spot instances and their interruptions, the Auto
//! Scaling warm pool, and the bill split by what was bought.
//!
//! - **Spot.** The group launches On-Demand up to its base, then the percentage above it,
//!   Spot for the rest ([`ModelParams::next_is_on_demand`]). A Spot instance's lifetime is
//!   exponential with the model's hazard; the draw is made for every launch in launch
//!   order, so the n-th instance of every policy meets the same interruption. At the notice
//!   the instance stops being capacity: the ECS agent drains it
//!   (`ECS_ENABLE_SPOT_INSTANCE_DRAINING`), the group launches its replacement at once
//!   (capacity rebalancing), and the worker does what `worker/src/interruption.rs` does: it
//!   stops receiving and releases at once every file that would not finish inside half the
//!   time left. The drain then stops its tasks as any drain does (the stop timeout, then
//!   the kill, releasing what is left). When the notice runs out EC2 takes the instance
//!   with whatever still runs on it (those messages come back at their visibility timeout).
//!   Everything lost that way is counted apart from the policy's own interruptions.
//! - **Warm pool.** Stopped, pre-initialised instances beside the group: the pool holds
//!   `max_group_prepared_capacity - desired`, never fewer than its minimum. A scale-out
//!   starts a stopped one (`warm_start_secs`) before it launches a new one; the pool is
//!   refilled by launching instances that boot (billed as running), then stop (billed as
//!   their volume). With `ReuseOnScaleIn` (the stack sets it) an instance the group scales
//!   in goes back to the pool stopped instead of being terminated.

use serde::Serialize;

use super::{Event, InstanceState, World};
use crate::sim::model::{Millis, secs};

/// The market side of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MarketOutcome {
    /// Billed On-Demand instance time (per second, with the billing minimum).
    pub on_demand_instance_ms: Millis,
    /// Billed Spot instance time (per second, with the billing minimum).
    pub spot_instance_ms: Millis,
    /// Warm-pool instances running while they initialise (billed at the On-Demand rate).
    pub warm_running_ms: Millis,
    /// Warm-pool instances stopped (billed as their root volume).
    pub warm_stopped_ms: Millis,
    /// Spot interruption notices received.
    pub spot_interruptions: u32,
    /// Files the worker released at a notice because they would not finish in time.
    pub released_at_notice: u32,
    /// Workers stopped or killed mid-file by an interruption (the drain's stop timeout or
    /// the instance being taken).
    pub interrupted_tasks: u32,
    /// Processing time thrown away because of interruptions (released or killed files).
    pub work_redone_ms: Millis,
    /// Instances started from the warm pool instead of launched.
    pub warm_starts: u32,
}

/// One instance of the warm pool.
#[derive(Debug, Clone, Copy)]
pub struct WarmInstance {
    /// Launched into the pool at (billed as running until it stops).
    launched_ms: Millis,
    /// Stopped since, once initialised.
    stopped_ms: Option<Millis>,
    /// Still in the pool (not started, not terminated).
    live: bool,
}

impl World<'_> {
    /// Whether `instance` has had its Spot interruption notice.
    pub(super) fn interrupted(&self, instance: Option<usize>) -> bool {
        instance.is_some_and(|i| self.instances[i].interrupted_ms.is_some())
    }

    /// The EC2 ids of the instances the ECS agent drained for a Spot notice (they were
    /// `ACTIVE` when it came), in launch order: to check what the controller did with them.
    pub fn instances_drained_by_a_notice(&self) -> Vec<String> {
        (0..self.instances.len())
            .filter(|&i| self.instances[i].drained_by_notice)
            .map(super::controller::instance_id)
            .collect()
    }

    /// A worker stopped mid-file: by the policy, or by an interruption.
    pub(super) fn count_interrupted_task(&mut self, spot: bool) {
        if spot {
            self.market.interrupted_tasks += 1;
        } else {
            self.interrupted_tasks += 1;
        }
    }

    /// Processing time thrown away: by the policy, or by an interruption.
    pub(super) fn count_lost_work(&mut self, spot: bool, ms: Millis) {
        if spot {
            self.market.work_redone_ms += ms;
        } else {
            self.work_redone_ms += ms;
        }
    }

    /// (On-Demand, all) instances of the group that count as capacity: launched, not
    /// terminated, not interrupted.
    pub(super) fn serving_mix(&self) -> (u32, u32) {
        let serving = self
            .live_instances
            .iter()
            .map(|&i| &self.instances[i])
            .filter(|inst| inst.interrupted_ms.is_none());
        let (mut on_demand, mut all) = (0, 0);
        for inst in serving {
            all += 1;
            on_demand += u32::from(inst.on_demand);
        }
        (on_demand, all)
    }

    /// Instances in service and not interrupted.
    pub(super) fn in_service_instances(&self) -> u32 {
        self.live_instances
            .iter()
            .filter(|&&i| {
                let inst = &self.instances[i];
                inst.state == InstanceState::InService && inst.interrupted_ms.is_none()
            })
            .count() as u32
    }

    /// How long after its launch a Spot instance gets its notice, from its uniform draw;
    /// `None` if never (no hazard, or beyond any run).
    pub(super) fn spot_lifetime(&self, draw: f64) -> Option<Millis> {
        let hazard = self.model.spot_interruptions_per_hour;
        if hazard <= 0.0 {
            return None;
        }
        let hours = -(1.0 - draw).ln() / hazard;
        let ms = hours * 3_600_000.0;
        // Beyond a century no run reaches; also keeps the cast in range.
        (ms < 3.2e12).then(|| ms.round() as Millis)
    }

    /// EC2's two-minute notice for Spot instance `i`.
    pub(super) fn spot_notice(&mut self, i: usize) {
        let inst = &self.instances[i];
        if inst.state == InstanceState::Terminated || inst.interrupted_ms.is_some() {
            return;
        }
        self.market.spot_interruptions += 1;
        let notice = secs(self.model.spot_notice_secs);
        let inst = &mut self.instances[i];
        inst.interrupted_ms = Some(self.now);
        // ECS_ENABLE_SPOT_INSTANCE_DRAINING: the agent drains the instance.
        inst.drained_by_notice = !inst.draining;
        inst.draining = true;
        let on_it: Vec<usize> = inst.tasks.iter().copied().collect();
        let mut released = false;
        for &task in &on_it {
            // The worker stops receiving at once...
            self.polling.remove(&task);
            self.tasks[task].poll_epoch += 1;
            // ...and hands back what would not be done inside half the time left.
            for msg in self.tasks[task].files.clone() {
                if self.time_to_finish(msg) >= notice / 2 {
                    self.release_at_notice(task, msg);
                    released = true;
                }
            }
        }
        if released {
            self.reschedule_files(i);
        }
        // The drain stops the tasks (stop timeout, then the kill) and the service starts
        // replacements elsewhere; the group replaces the instance now.
        for task in on_it {
            self.stop_task(task);
        }
        if matches!(
            self.capacity.instances,
            super::InstanceControl::ClusterAutoscaler { .. }
        ) {
            self.launch_instance();
        }
        self.schedule(self.now + notice, Event::SpotReclaim(i));
        self.dispatch();
        self.reconcile();
    }

    /// The notice has run out: EC2 takes the instance.
    pub(super) fn spot_reclaim(&mut self, i: usize) {
        if self.instances[i].state == InstanceState::Terminated {
            return;
        }
        self.terminate_instance(i);
        self.reconcile();
    }

    /// Milliseconds until file `msg` would be done at the speed it runs at now.
    fn time_to_finish(&self, msg: usize) -> Millis {
        self.messages[msg].run.map_or(0, |run| {
            let elapsed = (self.now - run.since_ms) as f64;
            let remaining = (run.remaining - elapsed * run.speed).max(0.0);
            (remaining / run.speed.max(f64::MIN_POSITIVE)).ceil() as Millis
        })
    }

    /// The worker releases `msg` with visibility 0: visible again at once, its work lost.
    fn release_at_notice(&mut self, task: usize, msg: usize) {
        let m = &mut self.messages[msg];
        let Some(run) = m.run.take() else {
            return;
        };
        m.run_epoch += 1;
        self.in_flight -= 1;
        self.market.released_at_notice += 1;
        self.count_lost_work(true, self.now - run.started_ms);
        let t = &mut self.tasks[task];
        t.files.retain(|&f| f != msg);
        if t.files.is_empty() {
            t.protected = false;
        }
        if let Some(i) = t.instance {
            self.instances[i].running_files -= 1;
        }
        self.make_visible(msg);
    }

    // ---- warm pool ---------------------------------------------------------------------

    /// The size the pool keeps now.
    fn warm_pool_target(&self) -> usize {
        let Some(size) = self.warm_pool_size else {
            return 0;
        };
        let max = size
            .max_group_prepared_capacity
            .unwrap_or(self.model.max_instances);
        max.saturating_sub(self.desired_instances)
            .max(size.min_size) as usize
    }

    /// Instances in the warm pool (initialising or stopped), as `DescribeWarmPool` lists them.
    pub(super) fn warm_pool_instances(&self) -> u32 {
        self.warm_live().count() as u32
    }

    fn warm_live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.warm.len()).filter(|&w| self.warm[w].live)
    }

    /// Starts a stopped instance of the pool for the group, if there is one.
    pub(super) fn take_from_warm_pool(&mut self) -> bool {
        let Some(w) = self
            .warm_live()
            .find(|&w| self.warm[w].stopped_ms.is_some())
        else {
            return false;
        };
        self.close_warm(w);
        self.market.warm_starts += 1;
        true
    }

    /// `ReuseOnScaleIn`: an instance scaled in goes back to the pool, stopped.
    pub(super) fn return_to_warm_pool(&mut self) {
        if self.warm_pool_size.is_some() {
            self.warm.push(WarmInstance {
                launched_ms: self.now,
                stopped_ms: Some(self.now),
                live: true,
            });
        }
    }

    /// Launches instances into the pool up to its size, or terminates the surplus (those
    /// still initialising first, then the stopped ones).
    pub(super) fn maintain_warm_pool(&mut self) {
        let target = self.warm_pool_target();
        let live: Vec<usize> = self.warm_live().collect();
        for _ in live.len()..target {
            let w = self.warm.len();
            self.warm.push(WarmInstance {
                launched_ms: self.now,
                stopped_ms: None,
                live: true,
            });
            let at = self.now + secs(self.model.instance_boot_secs);
            self.schedule(at, Event::WarmStopped(w));
        }
        if live.len() > target {
            let mut surplus = live;
            surplus.sort_by_key(|&w| self.warm[w].stopped_ms.is_some());
            let excess = surplus.len() - target;
            for w in surplus.into_iter().take(excess) {
                self.close_warm(w);
            }
        }
    }

    /// A pool instance has initialised and stops.
    pub(super) fn warm_stopped(&mut self, w: usize) {
        let minimum = secs(self.model.billing_minimum_secs);
        let instance = &mut self.warm[w];
        if instance.live && instance.stopped_ms.is_none() {
            instance.stopped_ms = Some(self.now);
            self.market.warm_running_ms += (self.now - instance.launched_ms).max(minimum);
        }
    }

    /// Takes instance `w` out of the pool (started or terminated) and books its time.
    fn close_warm(&mut self, w: usize) {
        let (running, stopped) = self.warm_time(w);
        self.market.warm_running_ms += running;
        self.market.warm_stopped_ms += stopped;
        self.warm[w].live = false;
    }

    /// Unbooked (running, stopped) time of pool instance `w` up to now: running until it
    /// stops (booked then, so 0 after), stopped since.
    fn warm_time(&self, w: usize) -> (Millis, Millis) {
        let instance = &self.warm[w];
        if !instance.live {
            return (0, 0);
        }
        match instance.stopped_ms {
            Some(since) => (0, self.now - since),
            None => (
                (self.now - instance.launched_ms).max(secs(self.model.billing_minimum_secs)),
                0,
            ),
        }
    }

    /// Adds the time of the instances still in the pool at the end of the run.
    pub(super) fn close_warm_books(&self, market: &mut MarketOutcome) {
        for w in self.warm_live() {
            let (running, stopped) = self.warm_time(w);
            market.warm_running_ms += running;
            market.warm_stopped_ms += stopped;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Driver, RunOutcome, SimError};
    use super::*;
    use crate::sim::autoscaler::{
        Autoscaler, Capacity, ClusterView, Command, InstanceControl, TaskControl,
    };
    use crate::sim::model::ModelParams;
    use crate::sim::scenario::{FileUpload, Scenario};

    /// The group at `instances` from `from_ms` on (0 before), one worker task per instance
    /// started with it: only the market model is at work.
    struct Fixed {
        instances: u32,
        from_ms: Millis,
    }

    impl Autoscaler for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }

        fn capacity(&self) -> Capacity {
            Capacity {
                tasks: TaskControl::Daemon,
                instances: InstanceControl::AsgChoosesVictim,
            }
        }

        fn interval_ms(&self) -> Millis {
            1_000
        }

        fn min_instances(&self) -> u32 {
            self.instances
        }

        fn evaluate(&mut self, view: &ClusterView<'_>) -> Command {
            let n = if view.now_ms >= self.from_ms {
                self.instances
            } else {
                0
            };
            Command {
                desired_tasks: None,
                desired_instances: Some(n),
                reason: "fixed".into(),
            }
        }
    }

    fn one_file(processing_ms: Millis) -> Scenario {
        Scenario {
            name: "one".into(),
            description: String::new(),
            horizon_ms: 1_000,
            files: vec![FileUpload {
                upload_ms: 0,
                size_mb: 1.0,
                processing_ms,
            }],
        }
    }

    /// Spot only, no random interruption, one task of one slot per instance.
    fn spot_model() -> ModelParams {
        ModelParams {
            s3_event_delay_secs: 0.0,
            on_demand_percentage_above_base: 0,
            spot_interruptions_per_hour: 0.0,
            tasks_per_instance: 1,
            slots_per_task: 1,
            ..ModelParams::default()
        }
    }

    /// Runs `scenario` on `policy`, with a Spot notice for the first instance at
    /// `notice_ms` if given.
    fn run_with_notice(
        scenario: &Scenario,
        model: &ModelParams,
        mut policy: Fixed,
        notice_ms: Option<Millis>,
    ) -> Result<RunOutcome, SimError> {
        let driver = Driver {
            name: "fixed",
            min_instances: policy.instances,
        };
        let mut world = World::new(scenario, model, policy.capacity(), driver, 1);
        if let Some(at) = notice_ms {
            world.schedule(at, Event::SpotNotice(0));
        }
        while world.next_tick()? {
            let command = policy.evaluate(&world.view());
            world.apply(command);
            world.schedule_tick(policy.interval_ms());
        }
        world.finish()
    }

    const READY_MS: Millis = 105_000;

    /// One file of `processing_ms` on one Spot instance whose notice comes `into_ms` after
    /// the file started.
    fn interrupted_into(processing_ms: Millis, into_ms: Millis) -> RunOutcome {
        let always_one = Fixed {
            instances: 1,
            from_ms: 0,
        };
        let notice = Some(READY_MS + into_ms);
        run_with_notice(&one_file(processing_ms), &spot_model(), always_one, notice)
            .expect("balances")
    }

    #[test]
    fn a_file_that_cannot_finish_in_the_notice_is_released_at_once_and_done_elsewhere() {
        // 100 s of work; the notice comes 10 s in, 90 s left: more than half the notice.
        let outcome = interrupted_into(100_000, 10_000);
        assert_eq!((outcome.completed, outcome.dead_lettered), (1, 0));
        let m = &outcome.market;
        assert_eq!((m.spot_interruptions, m.released_at_notice), (1, 1));
        assert_eq!(m.work_redone_ms, 10_000, "the 10 s done before the notice");
        assert_eq!(m.interrupted_tasks, 0, "nothing was left to kill");
        assert_eq!(outcome.interrupted_tasks, 0, "not the policy's doing");
        // The replacement was launched at the notice and ran the file from the start.
        assert_eq!(outcome.instances_launched, 2);
        assert_eq!(
            outcome.latencies_ms,
            [READY_MS + 10_000 + READY_MS + 100_000]
        );
        assert!(m.spot_instance_ms > 0 && m.on_demand_instance_ms == 0);
    }

    #[test]
    fn a_file_that_will_finish_in_time_is_kept_and_completes_on_the_interrupted_instance() {
        // 40 s of work; the notice comes 20 s in: 20 s left, inside the stop timeout too.
        let outcome = interrupted_into(40_000, 20_000);
        let m = &outcome.market;
        assert_eq!((m.spot_interruptions, m.released_at_notice), (1, 0));
        assert_eq!(m.work_redone_ms, 0);
        assert_eq!(outcome.latencies_ms, [READY_MS + 40_000]);
    }

    #[test]
    fn a_kept_file_the_drain_cannot_wait_for_is_released_at_the_stop_timeout() {
        // 100 s of work, the notice 45 s in: 55 s left is inside half the notice, so the
        // worker keeps it, but the drain's stop timeout (30 s) comes first.
        let outcome = interrupted_into(100_000, 45_000);
        let m = &outcome.market;
        assert_eq!((m.released_at_notice, m.interrupted_tasks), (0, 1));
        assert_eq!(m.work_redone_ms, 75_000);
        assert_eq!(outcome.completed, 1);
    }

    #[test]
    fn a_scale_out_starts_a_stopped_warm_instance_and_the_pool_costs_its_volumes() {
        let model = ModelParams {
            s3_event_delay_secs: 0.0,
            warm_pool: true,
            tasks_per_instance: 1,
            slots_per_task: 1,
            ..ModelParams::default()
        };
        // Nothing until 200 s: the pool (2 - 0 desired = 2) initialises meanwhile.
        let later = Fixed {
            instances: 1,
            from_ms: 200_000,
        };
        let outcome = run_with_notice(&one_file(10_000), &model, later, None).expect("balances");
        let m = &outcome.market;
        assert_eq!(m.warm_starts, 1);
        // Started at 200 s, in service 30 s later, the task 15 s after, then 10 s of work.
        assert_eq!(outcome.latencies_ms, [200_000 + 30_000 + 15_000 + 10_000]);
        // Both pool instances ran 90 s to initialise; the one started was stopped 90 s ->
        // 200 s, the other from 90 s to the end (2 - 1 desired = 1, the pool's minimum).
        assert_eq!(m.warm_running_ms, 2 * 90_000);
        assert_eq!(m.warm_stopped_ms, 110_000 + (outcome.end_ms - 90_000));
        // The instance taken from the pool is billed from its start: 55 s to the end of
        // the run, at the 60 s minimum.
        assert_eq!(outcome.end_ms, 255_000);
        assert_eq!(m.on_demand_instance_ms, 60_000);
    }
}
