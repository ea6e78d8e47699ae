//! The parameters of the simulated AWS world, with their defaults and where each comes from.
//!
//! Every policy runs against the same world: the same files, the same fleet limits, the same
//! worker. Only the decision of how many tasks and instances to run differs, so differences
//! in the results are differences between the autoscalers.

use serde::{Deserialize, Serialize};

/// One millisecond is the simulator's unit of time.
pub type Millis = u64;

/// Converts seconds (as written in configs) to the simulator's milliseconds.
pub fn secs(s: f64) -> Millis {
    (s * 1000.0).round().max(0.0) as Millis
}

/// The simulated world. Units are in the field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelParams {
    /// Delay from the end of an upload to its S3 event being visible in SQS. S3 delivers
    /// event notifications "typically in seconds"; drawn uniformly from 0 to twice this mean.
    pub s3_event_delay_secs: f64,
    /// The queue's visibility timeout. A message whose worker died becomes visible again this
    /// long after the worker's last visibility extension.
    pub visibility_timeout_secs: f64,
    /// The redrive policy's maxReceiveCount: a message received more often goes to the DLQ.
    pub max_receive_count: u32,
    /// Long-poll wait of an idle worker (SQS maximum, 20 s); each wait that ends empty is one
    /// `NumberOfEmptyReceives`.
    pub long_poll_secs: f64,
    /// From a launch request to the instance registered in the cluster (issue 5: ~90 s).
    pub instance_boot_secs: f64,
    /// From placing a task to its worker polling (image pull is cached; issue 5: ~15 s).
    pub task_start_secs: f64,
    /// ECS `stopTimeout` / Kubernetes `terminationGracePeriodSeconds`, both 30 s by default:
    /// a stopped worker finishes its file if it can within this, otherwise it releases the
    /// message when the time is up and the work done so far is lost.
    pub stop_timeout_secs: f64,
    /// Worker tasks that fit on one instance (2, the stack's `TasksPerInstance` and the
    /// controller's default; taken from the controller config when `--config` is given).
    pub tasks_per_instance: u32,
    /// Files one worker task analyses at once: the worker's `--concurrency` (2, the stack's
    /// `WorkerConcurrency` and the controller's `slots_per_task`; taken from the controller
    /// config when `--config` is given).
    pub slots_per_task: u32,
    /// vCPUs of one instance (2, a c7i.large). Files running on an instance share them:
    /// each runs at `min(1, vcpus_per_instance / files running on the instance)` of its
    /// nominal speed (docs/scaling.md, "Slots and shared vCPUs").
    pub vcpus_per_instance: u32,
    /// Fleet ceiling, the same for every policy (ASG MaxSize / node group max; 10, the
    /// controller's default; taken from the controller config when `--config` is given).
    pub max_instances: u32,
    /// Time from the end of a CloudWatch 1-minute period until its datapoint can be read by
    /// an alarm. AWS documents that SQS metrics can lag by minutes; 2 minutes is assumed.
    pub cloudwatch_lag_secs: f64,
    /// On-demand Linux price of one instance (c7i.large, us-east-1: $0.08925 an hour).
    pub instance_price_per_hour: f64,
    /// EC2 bills Linux instances per second with a 60-second minimum.
    pub billing_minimum_secs: f64,
    /// Analysis throughput of one file with a vCPU to itself, used to turn a file size into
    /// its nominal processing time. 20 MB/s is the GDAL figure for these machines in the
    /// classic-pipeline reference.
    pub throughput_mb_per_sec: f64,
    /// Fixed cost per file: download start, result upload, delete.
    pub per_file_overhead_secs: f64,
    /// Log-normal shape of the per-file processing noise (0 = none).
    pub processing_noise_sigma: f64,
    /// Time between the samples that feed the plots.
    pub sample_interval_secs: f64,
    /// A run that has not drained this long after its scenario's horizon is an error.
    pub drain_limit_secs: f64,
    /// Instances of the group that are always On-Demand (the stack's `OnDemandBaseCapacity`,
    /// default 0).
    pub on_demand_base_capacity: u32,
    /// Percentage of the instances above the base that are On-Demand, the others Spot (the
    /// stack's `OnDemandPercentageAboveBaseCapacity`). 100 here, so the default world is
    /// the On-Demand one every result before Spot was measured in; the stack's default 0 is
    /// `--capacity spot`.
    pub on_demand_percentage_above_base: u32,
    /// Spot price as a fraction of the On-Demand price (docs/scaling.md, "Spot and the warm
    /// pool": c7i.large in us-east-1 is typically 0.3–0.4 of On-Demand; 0.35).
    pub spot_price_fraction: f64,
    /// Interruptions per Spot instance-hour, the hazard of an exponential lifetime: the
    /// Spot Instance Advisor's lowest band, "<5 %" of instances reclaimed in a month, as
    /// `-ln(1 - 0.05) / 730` per hour, 7.0265e-5.
    pub spot_interruptions_per_hour: f64,
    /// From EC2's interruption notice to the instance being taken (two minutes).
    pub spot_notice_secs: f64,
    /// An Auto Scaling warm pool of stopped, pre-initialised instances (the stack's
    /// `WarmPool=on`; AWS allows none on a group that launches Spot).
    pub warm_pool: bool,
    /// Fewest instances the warm pool keeps (the stack's `WarmPoolMinSize`).
    pub warm_pool_min_size: u32,
    /// Most instances in the group and the pool together (the stack's
    /// `WarmPoolMaxGroupPreparedCapacity`): the pool holds this minus the desired capacity,
    /// never fewer than the minimum.
    pub warm_pool_max_group_prepared_capacity: u32,
    /// From a stopped warm-pool instance being started to it registered in the cluster: it
    /// skips the launch and user data (AWS: "in as low as 30 seconds").
    pub warm_start_secs: f64,
    /// Root volume of a worker instance (the stack's launch template: 30 GB gp3); all a
    /// stopped warm-pool instance costs.
    pub root_volume_gb: f64,
    /// EBS gp3 storage price in us-east-1, per GB-month (730 hours).
    pub ebs_price_per_gb_month: f64,
}

/// Hours in the month AWS prices EBS storage by.
pub const HOURS_PER_MONTH: f64 = 730.0;

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            s3_event_delay_secs: 1.0,
            visibility_timeout_secs: 300.0,
            max_receive_count: 5,
            long_poll_secs: 20.0,
            instance_boot_secs: 90.0,
            task_start_secs: 15.0,
            stop_timeout_secs: 30.0,
            tasks_per_instance: 2,
            slots_per_task: 2,
            vcpus_per_instance: 2,
            max_instances: 10,
            cloudwatch_lag_secs: 120.0,
            instance_price_per_hour: 0.08925,
            billing_minimum_secs: 60.0,
            throughput_mb_per_sec: 20.0,
            per_file_overhead_secs: 3.0,
            processing_noise_sigma: 0.2,
            sample_interval_secs: 30.0,
            drain_limit_secs: 7.0 * 86_400.0,
            on_demand_base_capacity: 0,
            on_demand_percentage_above_base: 100,
            spot_price_fraction: 0.35,
            spot_interruptions_per_hour: 7.0265e-5,
            spot_notice_secs: 120.0,
            warm_pool: false,
            warm_pool_min_size: 1,
            warm_pool_max_group_prepared_capacity: 2,
            warm_start_secs: 30.0,
            root_volume_gb: 30.0,
            ebs_price_per_gb_month: 0.08,
        }
    }
}

/// How the group buys its instances (`simulate --capacity`), as the stack's parameters
/// set it; applied over the model file, so it wins over the same keys there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CapacityPreset {
    /// On-Demand only, no warm pool: the world every earlier result was measured in.
    OnDemand,
    /// The stack's defaults: Spot above an On-Demand base of 0, 0 % On-Demand above it.
    Spot,
    /// On-Demand with a warm pool of stopped instances (`WarmPool=on`, which needs
    /// `OnDemandPercentageAboveBaseCapacity=100`).
    WarmPool,
}

impl CapacityPreset {
    /// Sets the purchase keys of `model` to this preset.
    pub fn apply(self, model: &mut ModelParams) {
        let (base, percentage, warm_pool) = match self {
            CapacityPreset::OnDemand => (model.on_demand_base_capacity, 100, false),
            CapacityPreset::Spot => (0, 0, false),
            CapacityPreset::WarmPool => (model.on_demand_base_capacity, 100, true),
        };
        model.on_demand_base_capacity = base;
        model.on_demand_percentage_above_base = percentage;
        model.warm_pool = warm_pool;
    }
}

/// A parameter outside its meaningful range, named so that the config can be fixed.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("model.{field} = {value}: {why}")]
pub struct ModelError {
    /// The config key at fault.
    pub field: &'static str,
    /// Its value as given.
    pub value: f64,
    /// What a valid value looks like.
    pub why: &'static str,
}

impl ModelParams {
    /// Checks every field once, before a run, so that a bad value is named instead of
    /// producing silently meaningless results.
    pub fn validate(&self) -> Result<(), ModelError> {
        let non_negative = [
            ("s3_event_delay_secs", self.s3_event_delay_secs),
            ("instance_boot_secs", self.instance_boot_secs),
            ("task_start_secs", self.task_start_secs),
            ("stop_timeout_secs", self.stop_timeout_secs),
            ("cloudwatch_lag_secs", self.cloudwatch_lag_secs),
            ("instance_price_per_hour", self.instance_price_per_hour),
            ("billing_minimum_secs", self.billing_minimum_secs),
            ("per_file_overhead_secs", self.per_file_overhead_secs),
            ("processing_noise_sigma", self.processing_noise_sigma),
            (
                "spot_interruptions_per_hour",
                self.spot_interruptions_per_hour,
            ),
            ("spot_notice_secs", self.spot_notice_secs),
            ("warm_start_secs", self.warm_start_secs),
            ("root_volume_gb", self.root_volume_gb),
            ("ebs_price_per_gb_month", self.ebs_price_per_gb_month),
        ];
        for (field, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ModelError {
                    field,
                    value,
                    why: "must be a finite number >= 0",
                });
            }
        }
        let positive = [
            ("visibility_timeout_secs", self.visibility_timeout_secs),
            ("long_poll_secs", self.long_poll_secs),
            ("throughput_mb_per_sec", self.throughput_mb_per_sec),
            ("sample_interval_secs", self.sample_interval_secs),
            ("drain_limit_secs", self.drain_limit_secs),
        ];
        for (field, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(ModelError {
                    field,
                    value,
                    why: "must be a finite number > 0",
                });
            }
        }
        let counts = [
            ("max_receive_count", self.max_receive_count),
            ("tasks_per_instance", self.tasks_per_instance),
            ("slots_per_task", self.slots_per_task),
            ("vcpus_per_instance", self.vcpus_per_instance),
            ("max_instances", self.max_instances),
        ];
        for (field, value) in counts {
            if value == 0 {
                return Err(ModelError {
                    field,
                    value: 0.0,
                    why: "must be at least 1",
                });
            }
        }
        if !(self.spot_price_fraction.is_finite()
            && self.spot_price_fraction > 0.0
            && self.spot_price_fraction <= 1.0)
        {
            return Err(ModelError {
                field: "spot_price_fraction",
                value: self.spot_price_fraction,
                why: "must be a fraction of the On-Demand price in (0, 1]",
            });
        }
        if self.on_demand_percentage_above_base > 100 {
            return Err(ModelError {
                field: "on_demand_percentage_above_base",
                value: f64::from(self.on_demand_percentage_above_base),
                why: "must be a percentage from 0 to 100",
            });
        }
        if self.warm_pool && self.launches_spot() {
            return Err(ModelError {
                field: "warm_pool",
                value: 1.0,
                why: "AWS allows no warm pool on a group that launches Spot: set \
                      on_demand_percentage_above_base = 100",
            });
        }
        Ok(())
    }

    /// Whether the group launches any Spot instance.
    pub fn launches_spot(&self) -> bool {
        self.on_demand_percentage_above_base < 100
    }

    /// Whether the next instance of a group that has `on_demand` On-Demand instances among
    /// `live` is On-Demand: the base first, then the percentage above it, rounded up in
    /// favour of On-Demand as Auto Scaling rounds.
    pub fn next_is_on_demand(&self, on_demand: u32, live: u32) -> bool {
        let after = live + 1;
        let base = self.on_demand_base_capacity.min(after);
        let above = u64::from(after - base);
        let wanted = u64::from(base)
            + (above * u64::from(self.on_demand_percentage_above_base)).div_ceil(100);
        u64::from(on_demand) < wanted
    }

    /// The lowest hourly price an instance of the group can have: Spot's when the group
    /// launches any (a clairvoyant policy would run on Spot only), On-Demand's otherwise.
    /// The offline lower bound is priced with it, so it stays a bound.
    pub fn cheapest_price_per_hour(&self) -> f64 {
        if self.launches_spot() {
            self.instance_price_per_hour * self.spot_price_fraction
        } else {
            self.instance_price_per_hour
        }
    }

    /// What a stopped warm-pool instance costs an hour: its root volume.
    pub fn stopped_price_per_hour(&self) -> f64 {
        self.root_volume_gb * self.ebs_price_per_gb_month / HOURS_PER_MONTH
    }

    /// Files one instance runs at once when all its tasks are busy.
    pub fn slots_per_instance(&self) -> u32 {
        self.tasks_per_instance.saturating_mul(self.slots_per_task)
    }

    /// Files one instance analyses at full speed at once: beyond its vCPUs, files share.
    pub fn full_speed_files_per_instance(&self) -> u32 {
        self.slots_per_instance()
            .min(self.vcpus_per_instance)
            .max(1)
    }

    /// The speed of each file while `files` run on one instance, as a fraction of its
    /// nominal speed: a file needs one vCPU, and files beyond the vCPUs share them equally.
    pub fn file_speed(&self, files: u32) -> f64 {
        if files == 0 {
            return 1.0;
        }
        (f64::from(self.vcpus_per_instance) / f64::from(files)).min(1.0)
    }

    /// Seconds of analysis for a file of `size_mb` before noise.
    pub fn processing_secs(&self, size_mb: f64) -> f64 {
        self.per_file_overhead_secs + size_mb / self.throughput_mb_per_sec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(ModelParams::default().validate(), Ok(()));
        let bad = ModelParams {
            tasks_per_instance: 0,
            ..ModelParams::default()
        };
        let err = bad.validate().expect_err("zero tasks per instance");
        assert_eq!(err.field, "tasks_per_instance");
        let bad = ModelParams {
            visibility_timeout_secs: -1.0,
            ..ModelParams::default()
        };
        assert_eq!(
            bad.validate().expect_err("negative timeout").field,
            "visibility_timeout_secs"
        );
    }

    #[test]
    fn files_beyond_the_vcpus_share_them_equally() {
        let m = ModelParams::default();
        assert_eq!(m.file_speed(0), 1.0);
        assert_eq!(m.file_speed(1), 1.0);
        assert_eq!(m.file_speed(2), 1.0);
        assert_eq!(m.file_speed(4), 0.5);
        assert_eq!(m.slots_per_instance(), 4);
        assert_eq!(m.full_speed_files_per_instance(), 2);
        for files in 1..=16 {
            // The instance never does more than its vCPUs' worth of work, nor less than a
            // full vCPU per file up to the vCPU count.
            let work = f64::from(files) * m.file_speed(files);
            assert!(work <= f64::from(m.vcpus_per_instance) + 1e-9);
            assert!(work >= f64::from(files.min(m.vcpus_per_instance)) - 1e-9);
        }
    }

    #[test]
    fn the_group_fills_its_on_demand_base_then_the_percentage_above_it() {
        let mix = |base, percentage, n: u32| {
            let m = ModelParams {
                on_demand_base_capacity: base,
                on_demand_percentage_above_base: percentage,
                ..ModelParams::default()
            };
            let mut on_demand = 0;
            for live in 0..n {
                if m.next_is_on_demand(on_demand, live) {
                    on_demand += 1;
                }
            }
            on_demand
        };
        assert_eq!(mix(0, 100, 5), 5, "the default world is On-Demand only");
        assert_eq!(mix(0, 0, 5), 0, "the stack's default: all Spot");
        assert_eq!(mix(2, 0, 5), 2);
        // 25 % above a base of 1: of 4 above the base, 1 On-Demand; of 5, 2 (rounded up).
        assert_eq!(mix(1, 25, 5), 2);
        assert_eq!(mix(1, 25, 6), 3);
    }

    #[test]
    fn no_warm_pool_with_spot_and_a_stopped_instance_costs_its_volume() {
        let spot_and_warm = ModelParams {
            on_demand_percentage_above_base: 0,
            warm_pool: true,
            ..ModelParams::default()
        };
        assert_eq!(
            spot_and_warm.validate().expect_err("AWS refuses it").field,
            "warm_pool"
        );
        let m = ModelParams::default();
        // 30 GB x $0.08 a GB-month over 730 hours.
        assert!((m.stopped_price_per_hour() - 30.0 * 0.08 / 730.0).abs() < 1e-12);
        // "<5 %" a month as an hourly hazard: 5 % of instances gone after 730 hours.
        let survive = (-m.spot_interruptions_per_hour * HOURS_PER_MONTH).exp();
        assert!((survive - 0.95).abs() < 1e-6, "{survive}");
    }

    #[test]
    fn processing_time_grows_with_size() {
        let m = ModelParams::default();
        assert_eq!(m.processing_secs(0.0), m.per_file_overhead_secs);
        assert!(m.processing_secs(200.0) > m.processing_secs(100.0));
    }
}
