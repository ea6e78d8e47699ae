//! The discrete-event model of S3 events, SQS, ECS tasks and EC2 instances.
//!
//! Events are processed in time order (ties in the order they were scheduled), so a run is
//! a pure function of the scenario, the parameters, the policy and the seed. The world
//! checks message conservation at every sample and at the end, and returns an error rather
//! than a summary if any message is unaccounted for.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};

use serde::Serialize;

use super::autoscaler::{
    Autoscaler, Capacity, CloudWatchPoint, ClusterView, Command, InstanceControl, QueueView,
    StopOrder, TaskControl,
};
mod controller;
mod market;

use super::model::{Millis, ModelParams, secs};
use super::rng::SimRng;
use super::scenario::Scenario;

const MINUTE_MS: Millis = 60_000;
const STREAM_EVENT_DELAY: u64 = 3;
const STREAM_FLEET: u64 = 4;
const STREAM_RECEIVE: u64 = 5;
/// The Spot lifetimes: one draw per launch, in launch order, so the n-th instance any
/// policy launches meets the same interruption.
const STREAM_SPOT: u64 = 6;

/// A run that cannot produce a trustworthy result.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    /// The books do not balance: a bug in the model, never to be reported as a result.
    #[error("message conservation violated at t={at_secs:.0}s: {detail}")]
    Conservation {
        /// Simulated time of the check.
        at_secs: f64,
        /// The counts that disagree.
        detail: String,
    },
    /// A simulated call waited, which none can: a bug in the simulator.
    #[error("a simulated AWS call did not complete at once")]
    Stalled,
    /// The policy left work undone long after the scenario ended.
    #[error(
        "{policy} did not drain {scenario}: {unresolved} of {total} messages still open at t={at_secs:.0}s"
    )]
    DidNotDrain {
        /// The policy.
        policy: String,
        /// The scenario.
        scenario: String,
        /// Messages neither completed nor dead-lettered.
        unresolved: usize,
        /// All messages.
        total: usize,
        /// When the run gave up.
        at_secs: f64,
    },
}

/// One point of the time series behind the plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Simulated time.
    pub t_ms: Millis,
    /// Messages visible in the queue.
    pub visible: u32,
    /// Messages received and not yet deleted.
    pub in_flight: u32,
    /// ECS desired count.
    pub desired_tasks: u32,
    /// Tasks whose worker runs.
    pub running_tasks: u32,
    /// Instances launched and not terminated.
    pub instances: u32,
}

/// One change of desired capacity and why the policy made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// Simulated time in seconds.
    pub t_secs: f64,
    /// Desired tasks after the change.
    pub desired_tasks: u32,
    /// Desired instances after the change.
    pub desired_instances: u32,
    /// The policy's reason.
    pub reason: String,
    /// The AWS calls that carried the decision out, as the controller logs them (only the
    /// geobatch controller's loop makes calls; the modelled autoscalers set sizes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<String>,
}

/// Everything a run measured; turned into a summary row by the report.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// Upload-to-result latency of each completed file.
    pub latencies_ms: Vec<Millis>,
    /// Files completed.
    pub completed: usize,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: usize,
    /// Files in the scenario.
    pub total: usize,
    /// First upload to last completion.
    pub makespan_ms: Millis,
    /// Billed instance time (per second, with the billing minimum per instance).
    pub billed_instance_ms: Millis,
    /// Instance time during which the instance processed no file.
    pub idle_instance_ms: Millis,
    /// Workers killed or stopped in the middle of a file.
    pub interrupted_tasks: u32,
    /// Processing time thrown away by those interruptions.
    pub work_redone_ms: Millis,
    /// The market side of the run: Spot interruptions and what they cost in work, and the
    /// bill split by purchase option.
    pub market: market::MarketOutcome,
    /// Changes of desired capacity (service count, ASG capacity, node-group size).
    pub scaling_actions: u32,
    /// Instances ever launched.
    pub instances_launched: u32,
    /// When the run ended (the accounting window).
    pub end_ms: Millis,
    /// Time series for the plots.
    pub samples: Vec<Sample>,
    /// Every change of desired capacity a policy command made, with its reason.
    pub decisions: Vec<DecisionRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrive(usize),
    Redeliver { msg: usize, attempt: u32 },
    InstanceReady(usize),
    TaskReady { task: usize, epoch: u64 },
    FileDone { msg: usize, epoch: u64 },
    PollExpired { task: usize, epoch: u64 },
    TaskKill { task: usize, epoch: u64 },
    SpotNotice(usize),
    SpotReclaim(usize),
    WarmStopped(usize),
    PolicyTick,
    MinuteClose,
    Sample,
    NodeScan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsgState {
    NotYetSent,
    Visible,
    InFlight,
    Completed,
    DeadLettered,
}

#[derive(Debug, Clone)]
struct Message {
    upload_ms: Millis,
    processing_ms: Millis,
    receives: u32,
    attempt: u32,
    state: MsgState,
    /// The analysis under way, while a worker has the message.
    run: Option<Run>,
    /// Bumped whenever the file's completion time changes, so a stale `FileDone` is
    /// ignored.
    run_epoch: u64,
}

/// One file being analysed in one of a task's slots.
#[derive(Debug, Clone, Copy)]
struct Run {
    task: usize,
    started_ms: Millis,
    /// Nominal milliseconds of analysis still to do (at full speed).
    remaining: f64,
    /// The fraction of full speed it runs at since `since_ms`.
    speed: f64,
    since_ms: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Unplaced,
    Starting,
    /// The worker runs: it analyses the files in its slots and long-polls while a slot is
    /// free.
    Running,
    /// Told to stop while analysing: finishes its files if it can, and is killed at the
    /// stop timeout.
    Stopping,
    Gone,
}

#[derive(Debug, Clone)]
struct Task {
    instance: Option<usize>,
    state: TaskState,
    epoch: u64,
    /// Bumped whenever a long poll ends or is abandoned, so a stale `PollExpired` is
    /// ignored.
    poll_epoch: u64,
    protected: bool,
    created_ms: Millis,
    /// The messages in its slots.
    files: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InstanceState {
    Booting,
    InService,
    Terminated,
}

#[derive(Debug, Clone)]
struct Instance {
    launched_ms: Millis,
    ended_ms: Option<Millis>,
    state: InstanceState,
    tasks: BTreeSet<usize>,
    /// Files being analysed on it, sharing its vCPUs.
    running_files: u32,
    empty_since_ms: Option<Millis>,
    /// ECS container instance state `DRAINING`: no new task is placed on it.
    draining: bool,
    /// Bought On-Demand (otherwise Spot).
    on_demand: bool,
    /// When EC2's Spot interruption notice came: from then on the instance is not
    /// capacity, and it is taken when the notice runs out.
    interrupted_ms: Option<Millis>,
    /// The notice found it `ACTIVE`, so the drain it shows is the ECS agent's, not the
    /// controller's.
    drained_by_notice: bool,
}

/// Runs `scenario` through one of the modelled autoscalers (the baselines) and returns what
/// happened. The geobatch controller runs through its own loop instead
/// ([`super::control_loop`]), against the same world.
pub fn run(
    scenario: &Scenario,
    model: &ModelParams,
    policy: &mut dyn Autoscaler,
    seed: u64,
) -> Result<RunOutcome, SimError> {
    let mut world = World::new(
        scenario,
        model,
        policy.capacity(),
        Driver {
            name: policy.name(),
            min_instances: policy.min_instances(),
        },
        seed,
    );
    let interval = policy.interval_ms().max(1);
    while world.next_tick()? {
        let command = {
            let view = world.view();
            policy.evaluate(&view)
        };
        world.apply(command);
        world.schedule_tick(interval);
    }
    world.finish()
}

/// When each file's message becomes visible in SQS: its upload plus the S3 event delay.
/// The delay is drawn from its own stream, so every policy (and the lower bound) sees the
/// same arrival times.
pub fn arrival_times(scenario: &Scenario, model: &ModelParams, seed: u64) -> Vec<Millis> {
    let mut delay_rng = SimRng::new(seed, STREAM_EVENT_DELAY);
    let mean_delay = model.s3_event_delay_secs;
    scenario
        .files
        .iter()
        .map(|f| f.upload_ms + secs(2.0 * mean_delay * delay_rng.unit()))
        .collect()
}

/// Who makes the world's scaling decisions, as far as the world needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Driver {
    /// The policy's name, for errors.
    pub name: &'static str,
    /// The smallest fleet it keeps when there is no work; a run ends once the work is done,
    /// the scenario's horizon has passed and the fleet is down to this.
    pub min_instances: u32,
}

/// The simulated AWS account: the queue, the service, the group, their instances, and the
/// clock. Advanced event by event; a policy acts on it between events.
pub struct World<'a> {
    scenario: &'a Scenario,
    model: &'a ModelParams,
    capacity: Capacity,
    driver: Driver,
    /// Whether the last event processed left the run finished, checked before the next.
    started: bool,
    now: Millis,
    last_accounted: Millis,
    seq: u64,
    events: BinaryHeap<Reverse<(Millis, u64, Event)>>,
    rng: SimRng,
    /// Which long-polling worker SQS hands a message to.
    receive_rng: SimRng,

    messages: Vec<Message>,
    visible: VecDeque<usize>,
    not_yet_sent: usize,
    in_flight: u32,
    completed: usize,
    dead_lettered: usize,
    latencies_ms: Vec<Millis>,
    last_completion_ms: Millis,

    tasks: Vec<Task>,
    live_tasks: BTreeSet<usize>,
    /// Running tasks with a free slot, long-polling.
    polling: BTreeSet<usize>,
    instances: Vec<Instance>,
    live_instances: BTreeSet<usize>,
    desired_tasks: u32,
    desired_instances: u32,
    last_node_add_ms: Option<Millis>,

    cloudwatch: Vec<CloudWatchPoint>,
    minute_visible_max: u32,
    minute_not_visible_max: u32,
    minute_empty_receives: u32,

    idle_instance_ms: Millis,
    interrupted_tasks: u32,
    work_redone_ms: Millis,
    /// One uniform draw per launch: the instance's Spot lifetime, if it is Spot.
    spot_rng: SimRng,
    market: market::MarketOutcome,
    warm: Vec<market::WarmInstance>,
    /// The warm pool's sizes as `PutWarmPool` last set them; `None` without a pool.
    warm_pool_size: Option<crate::policy::WarmPoolSize>,
    scaling_actions: u32,
    samples: Vec<Sample>,
    decisions: Vec<DecisionRecord>,
}

impl<'a> World<'a> {
    /// A world at time 0 with every upload scheduled and nothing running.
    pub fn new(
        scenario: &'a Scenario,
        model: &'a ModelParams,
        capacity: Capacity,
        driver: Driver,
        seed: u64,
    ) -> Self {
        let messages = scenario
            .files
            .iter()
            .map(|f| Message {
                upload_ms: f.upload_ms,
                processing_ms: f.processing_ms,
                receives: 0,
                attempt: 0,
                state: MsgState::NotYetSent,
                run: None,
                run_epoch: 0,
            })
            .collect::<Vec<_>>();
        let mut world = Self {
            scenario,
            model,
            capacity,
            driver,
            started: false,
            now: 0,
            last_accounted: 0,
            seq: 0,
            events: BinaryHeap::new(),
            rng: SimRng::new(seed, STREAM_FLEET),
            receive_rng: SimRng::new(seed, STREAM_RECEIVE),
            not_yet_sent: messages.len(),
            messages,
            visible: VecDeque::new(),
            in_flight: 0,
            completed: 0,
            dead_lettered: 0,
            latencies_ms: Vec::new(),
            last_completion_ms: 0,
            tasks: Vec::new(),
            live_tasks: BTreeSet::new(),
            polling: BTreeSet::new(),
            instances: Vec::new(),
            live_instances: BTreeSet::new(),
            desired_tasks: 0,
            desired_instances: 0,
            last_node_add_ms: None,
            cloudwatch: Vec::new(),
            minute_visible_max: 0,
            minute_not_visible_max: 0,
            minute_empty_receives: 0,
            idle_instance_ms: 0,
            interrupted_tasks: 0,
            work_redone_ms: 0,
            spot_rng: SimRng::new(seed, STREAM_SPOT),
            market: market::MarketOutcome::default(),
            warm: Vec::new(),
            warm_pool_size: model.warm_pool.then_some(crate::policy::WarmPoolSize {
                min_size: model.warm_pool_min_size,
                max_group_prepared_capacity: Some(model.warm_pool_max_group_prepared_capacity),
            }),
            scaling_actions: 0,
            samples: Vec::new(),
            decisions: Vec::new(),
        };
        world.start(seed);
        world
    }

    fn schedule(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, event)));
    }

    fn start(&mut self, seed: u64) {
        for (i, at) in arrival_times(self.scenario, self.model, seed)
            .into_iter()
            .enumerate()
        {
            self.schedule(at, Event::Arrive(i));
        }
        self.schedule(0, Event::PolicyTick);
        self.schedule(MINUTE_MS, Event::MinuteClose);
        self.schedule(0, Event::Sample);
        if let InstanceControl::ClusterAutoscaler {
            scan_interval_ms, ..
        } = self.capacity.instances
        {
            self.schedule(scan_interval_ms, Event::NodeScan);
        }
    }

    /// Simulated time now.
    pub fn now_ms(&self) -> Millis {
        self.now
    }

    /// Processes events until the policy's next evaluation is due (`true`: evaluate, then
    /// [`World::schedule_tick`]) or the run is over (`false`: the work is done, the horizon
    /// has passed and the fleet is down to the policy's floor).
    pub fn next_tick(&mut self) -> Result<bool, SimError> {
        loop {
            if self.started && self.finished()? {
                return Ok(false);
            }
            self.started = true;
            let Some(Reverse((at, _, event))) = self.events.pop() else {
                return Ok(false);
            };
            self.advance(at);
            match event {
                Event::Arrive(m) => self.arrive(m),
                Event::Redeliver { msg, attempt } => self.redeliver(msg, attempt),
                Event::InstanceReady(i) => self.instance_ready(i),
                Event::TaskReady { task, epoch } => self.task_ready(task, epoch),
                Event::FileDone { msg, epoch } => self.file_done(msg, epoch),
                Event::PollExpired { task, epoch } => self.poll_expired(task, epoch),
                Event::TaskKill { task, epoch } => self.task_kill(task, epoch),
                Event::SpotNotice(i) => self.spot_notice(i),
                Event::SpotReclaim(i) => self.spot_reclaim(i),
                Event::WarmStopped(w) => self.warm_stopped(w),
                Event::PolicyTick => return Ok(true),
                Event::MinuteClose => {
                    self.close_minute();
                    self.schedule(self.now + MINUTE_MS, Event::MinuteClose);
                }
                Event::Sample => {
                    self.sample();
                    self.check_conservation()?;
                    self.schedule(
                        self.now + secs(self.model.sample_interval_secs),
                        Event::Sample,
                    );
                }
                Event::NodeScan => {
                    if let InstanceControl::ClusterAutoscaler {
                        scan_interval_ms,
                        unneeded_ms,
                        delay_after_add_ms,
                    } = self.capacity.instances
                    {
                        self.node_scan(unneeded_ms, delay_after_add_ms);
                        self.schedule(self.now + scan_interval_ms, Event::NodeScan);
                    }
                }
            }
        }
    }

    /// Schedules the policy's next evaluation `wait_ms` from now.
    pub fn schedule_tick(&mut self, wait_ms: Millis) {
        self.schedule(self.now + wait_ms.max(1), Event::PolicyTick);
    }

    /// Whether the run is over; an error if it has run past the drain limit.
    fn finished(&self) -> Result<bool, SimError> {
        let resolved = self.completed + self.dead_lettered == self.messages.len();
        if resolved
            && self.now >= self.scenario.horizon_ms
            && self.live_instances.len() <= self.driver.min_instances as usize
        {
            return Ok(true);
        }
        let give_up = self.scenario.horizon_ms + secs(self.model.drain_limit_secs);
        if self.now > give_up {
            return Err(SimError::DidNotDrain {
                policy: self.driver.name.to_string(),
                scenario: self.scenario.name.clone(),
                unresolved: self.messages.len() - self.completed - self.dead_lettered,
                total: self.messages.len(),
                at_secs: self.now as f64 / 1000.0,
            });
        }
        Ok(false)
    }

    /// The final sample and checks, and the run's outcome.
    pub fn finish(&mut self) -> Result<RunOutcome, SimError> {
        self.sample();
        self.check_conservation()?;
        self.final_audit()?;
        Ok(self.outcome())
    }

    /// Accrues idle instance time up to `at` and moves the clock.
    fn advance(&mut self, at: Millis) {
        let dt = at.saturating_sub(self.last_accounted);
        if dt > 0 {
            let idle = self
                .live_instances
                .iter()
                .filter(|&&i| self.instances[i].running_files == 0)
                .count() as Millis;
            self.idle_instance_ms += idle * dt;
            self.last_accounted = at;
        }
        self.now = at;
    }

    // ---- SQS -------------------------------------------------------------------------

    fn arrive(&mut self, m: usize) {
        self.not_yet_sent -= 1;
        self.make_visible(m);
        self.dispatch();
    }

    fn make_visible(&mut self, m: usize) {
        self.messages[m].state = MsgState::Visible;
        self.visible.push_back(m);
        self.minute_visible_max = self.minute_visible_max.max(self.visible.len() as u32);
    }

    fn redeliver(&mut self, msg: usize, attempt: u32) {
        let m = &self.messages[msg];
        if m.state == MsgState::InFlight && m.attempt == attempt {
            self.in_flight -= 1;
            self.make_visible(msg);
            self.dispatch();
        }
    }

    /// Hands visible messages to workers with a free slot (a long poll returns as soon as
    /// a message is there; SQS picks among the waiting polls, seeded here). A message
    /// received more than maxReceiveCount times goes to the DLQ instead.
    fn dispatch(&mut self) {
        while !self.polling.is_empty() && !self.visible.is_empty() {
            let pick = self.receive_rng.below(self.polling.len());
            let Some(&task) = self.polling.iter().nth(pick) else {
                break;
            };
            let Some(msg) = self.visible.pop_front() else {
                break;
            };
            let message = &mut self.messages[msg];
            message.receives += 1;
            if message.receives > self.model.max_receive_count {
                message.state = MsgState::DeadLettered;
                self.dead_lettered += 1;
                continue;
            }
            self.start_file(task, msg);
        }
    }

    /// A worker starts analysing `msg` in a free slot; with slots still free it polls again.
    fn start_file(&mut self, task: usize, msg: usize) {
        let message = &mut self.messages[msg];
        message.state = MsgState::InFlight;
        message.attempt += 1;
        message.run = Some(Run {
            task,
            started_ms: self.now,
            remaining: message.processing_ms as f64,
            speed: 1.0,
            since_ms: self.now,
        });
        self.in_flight += 1;
        self.minute_not_visible_max = self.minute_not_visible_max.max(self.in_flight);
        let protect = matches!(
            self.capacity.tasks,
            TaskControl::Service {
                protect_busy: true,
                ..
            }
        );
        let t = &mut self.tasks[task];
        t.files.push(msg);
        t.protected = protect;
        let full = t.files.len() >= self.model.slots_per_task as usize;
        let instance = t.instance;
        if full {
            self.polling.remove(&task);
            self.tasks[task].poll_epoch += 1;
        } else {
            self.poll(task);
        }
        if let Some(i) = instance {
            self.instances[i].running_files += 1;
            self.reschedule_files(i);
        }
    }

    /// The files on instance `i` after the number running there changed: each one's
    /// progress so far is booked at its old speed, and it goes on at the new one.
    fn reschedule_files(&mut self, i: usize) {
        let speed = self.model.file_speed(self.instances[i].running_files);
        let files: Vec<usize> = self.instances[i]
            .tasks
            .iter()
            .flat_map(|&t| self.tasks[t].files.iter().copied())
            .collect();
        for msg in files {
            let message = &mut self.messages[msg];
            let Some(run) = message.run.as_mut() else {
                continue;
            };
            let elapsed = (self.now - run.since_ms) as f64;
            run.remaining = (run.remaining - elapsed * run.speed).max(0.0);
            run.since_ms = self.now;
            run.speed = speed;
            let done = self.now + (run.remaining / speed).ceil() as Millis;
            message.run_epoch += 1;
            let epoch = message.run_epoch;
            self.schedule(done, Event::FileDone { msg, epoch });
        }
    }

    // ---- workers ---------------------------------------------------------------------

    /// Starts (or restarts) a long poll of a running task with a free slot. A worker on an
    /// instance under a Spot notice receives nothing (its watcher has seen the notice).
    fn poll(&mut self, task: usize) {
        if self.interrupted(self.tasks[task].instance) {
            return;
        }
        self.polling.insert(task);
        let t = &mut self.tasks[task];
        t.poll_epoch += 1;
        let epoch = t.poll_epoch;
        let at = self.now + secs(self.model.long_poll_secs);
        self.schedule(at, Event::PollExpired { task, epoch });
    }

    fn poll_expired(&mut self, task: usize, epoch: u64) {
        if self.tasks[task].poll_epoch == epoch && self.polling.contains(&task) {
            self.minute_empty_receives += 1;
            self.poll(task);
        }
    }

    fn task_ready(&mut self, task: usize, epoch: u64) {
        let t = &mut self.tasks[task];
        if t.epoch == epoch && t.state == TaskState::Starting {
            t.state = TaskState::Running;
            t.protected = false;
            self.poll(task);
            self.dispatch();
            self.reconcile();
        }
    }

    fn file_done(&mut self, msg: usize, epoch: u64) {
        let m = &mut self.messages[msg];
        if m.run_epoch != epoch || m.state != MsgState::InFlight {
            return;
        }
        let Some(run) = m.run.take() else {
            return;
        };
        m.state = MsgState::Completed;
        m.run_epoch += 1;
        self.in_flight -= 1;
        self.completed += 1;
        self.latencies_ms.push(self.now - m.upload_ms);
        self.last_completion_ms = self.now;
        let task = run.task;
        let t = &mut self.tasks[task];
        t.files.retain(|&f| f != msg);
        let idle = t.files.is_empty();
        let (state, instance) = (t.state, t.instance);
        if idle {
            t.protected = false;
        }
        if let Some(i) = instance {
            self.instances[i].running_files -= 1;
            self.reschedule_files(i);
        }
        match state {
            TaskState::Stopping if idle => self.remove_task(task),
            TaskState::Running if !self.polling.contains(&task) => {
                self.poll(task);
                self.dispatch();
            }
            _ => {}
        }
        self.reconcile();
    }

    fn task_kill(&mut self, task: usize, epoch: u64) {
        let t = &self.tasks[task];
        if t.epoch != epoch || t.state != TaskState::Stopping {
            return;
        }
        // The worker's shutdown handler releases its messages before the kill: they are
        // visible again at once, but the work done on them is lost.
        let (instance, files) = (t.instance, t.files.clone());
        let spot = self.interrupted(instance);
        self.count_interrupted_task(spot);
        for msg in files {
            let m = &mut self.messages[msg];
            let lost = m.run.take().map(|run| self.now - run.started_ms);
            m.run_epoch += 1;
            if let Some(ms) = lost {
                self.count_lost_work(spot, ms);
            }
            self.in_flight -= 1;
            self.make_visible(msg);
        }
        self.remove_task(task);
        self.dispatch();
        self.reconcile();
    }

    /// Takes a task off its instance; its files must have been dealt with.
    fn remove_task(&mut self, task: usize) {
        let t = &mut self.tasks[task];
        let dropped = t.files.len() as u32;
        t.files.clear();
        t.state = TaskState::Gone;
        t.protected = false;
        t.epoch += 1;
        t.poll_epoch += 1;
        self.live_tasks.remove(&task);
        self.polling.remove(&task);
        if let Some(i) = t.instance {
            let inst = &mut self.instances[i];
            inst.tasks.remove(&task);
            inst.running_files -= dropped;
            if inst.tasks.is_empty() && inst.state == InstanceState::InService {
                inst.empty_since_ms = Some(self.now);
            }
            if dropped > 0 {
                self.reschedule_files(i);
            }
        }
    }

    /// Stops a task the way ECS / Kubernetes do: SIGTERM, then SIGKILL after the stop
    /// timeout. A busy worker stops receiving and finishes the files that complete in time.
    fn stop_task(&mut self, task: usize) {
        let t = &mut self.tasks[task];
        match t.state {
            TaskState::Running if !t.files.is_empty() => {
                t.state = TaskState::Stopping;
                t.epoch += 1;
                t.poll_epoch += 1;
                let epoch = t.epoch;
                self.live_tasks.remove(&task);
                self.polling.remove(&task);
                let kill_at = self.now + secs(self.model.stop_timeout_secs);
                self.schedule(kill_at, Event::TaskKill { task, epoch });
            }
            TaskState::Stopping | TaskState::Gone => {}
            _ => self.remove_task(task),
        }
    }

    // ---- fleet -----------------------------------------------------------------------

    /// The group adds an instance: started from the warm pool if one is stopped there,
    /// launched otherwise, On-Demand or Spot as the group's mix says.
    fn launch_instance(&mut self) {
        let id = self.instances.len();
        let lifetime_draw = self.spot_rng.unit();
        let boot = if self.take_from_warm_pool() {
            self.model.warm_start_secs
        } else {
            self.model.instance_boot_secs
        };
        let (on_demand, live) = self.serving_mix();
        let on_demand = self.model.next_is_on_demand(on_demand, live);
        self.instances.push(Instance {
            launched_ms: self.now,
            ended_ms: None,
            state: InstanceState::Booting,
            tasks: BTreeSet::new(),
            running_files: 0,
            empty_since_ms: None,
            draining: false,
            on_demand,
            interrupted_ms: None,
            drained_by_notice: false,
        });
        self.live_instances.insert(id);
        self.schedule(self.now + secs(boot), Event::InstanceReady(id));
        if !on_demand && let Some(after) = self.spot_lifetime(lifetime_draw) {
            self.schedule(self.now + after, Event::SpotNotice(id));
        }
    }

    fn instance_ready(&mut self, i: usize) {
        if self.instances[i].state != InstanceState::Booting {
            return;
        }
        self.instances[i].state = InstanceState::InService;
        self.instances[i].empty_since_ms = Some(self.now);
        // An instance interrupted while it booted joins drained and gets no worker.
        if self.capacity.tasks == TaskControl::Daemon && !self.instances[i].draining {
            for _ in 0..self.model.tasks_per_instance {
                let task = self.new_task();
                self.place(task, i);
            }
        }
        self.reconcile();
    }

    /// Terminates an instance with everything on it. A worker killed mid-file cannot
    /// release its messages: each returns when its visibility timeout, last extended by the
    /// worker's heartbeat (every half timeout), runs out.
    fn terminate_instance(&mut self, i: usize) {
        let on_it: Vec<usize> = self.instances[i].tasks.iter().copied().collect();
        let vt = secs(self.model.visibility_timeout_secs);
        let heartbeat = (vt / 2).max(1);
        let spot = self.interrupted(Some(i));
        for task in on_it {
            let files = self.tasks[task].files.clone();
            if !files.is_empty() {
                self.count_interrupted_task(spot);
            }
            for msg in files {
                let m = &mut self.messages[msg];
                if let Some(run) = m.run.take() {
                    let held = self.now - run.started_ms;
                    let last_extension = run.started_ms + held / heartbeat * heartbeat;
                    let attempt = m.attempt;
                    m.run_epoch += 1;
                    self.count_lost_work(spot, held);
                    self.schedule(last_extension + vt, Event::Redeliver { msg, attempt });
                }
            }
            self.remove_task(task);
        }
        let inst = &mut self.instances[i];
        let reusable = inst.state == InstanceState::InService && inst.interrupted_ms.is_none();
        inst.state = InstanceState::Terminated;
        inst.ended_ms = Some(self.now);
        self.live_instances.remove(&i);
        if reusable {
            self.return_to_warm_pool();
        }
    }

    fn new_task(&mut self) -> usize {
        let id = self.tasks.len();
        self.tasks.push(Task {
            instance: None,
            state: TaskState::Unplaced,
            epoch: 0,
            poll_epoch: 0,
            protected: false,
            created_ms: self.now,
            files: Vec::new(),
        });
        self.live_tasks.insert(id);
        id
    }

    fn place(&mut self, task: usize, i: usize) {
        let t = &mut self.tasks[task];
        t.instance = Some(i);
        t.state = TaskState::Starting;
        t.epoch += 1;
        let epoch = t.epoch;
        let inst = &mut self.instances[i];
        inst.tasks.insert(task);
        inst.empty_since_ms = None;
        let at = self.now + secs(self.model.task_start_secs);
        self.schedule(at, Event::TaskReady { task, epoch });
    }

    /// Carries out a modelled autoscaler's command.
    pub fn apply(&mut self, command: Command) {
        let tpi = self.model.tasks_per_instance;
        let max_instances = self.model.max_instances;
        let before = (self.desired_tasks, self.desired_instances);
        if let Some(n) = command.desired_instances
            && !matches!(
                self.capacity.instances,
                InstanceControl::ClusterAutoscaler { .. }
            )
        {
            let n = n.min(max_instances);
            if n != self.desired_instances {
                self.desired_instances = n;
                self.scaling_actions += 1;
            }
        }
        if let Some(n) = command.desired_tasks
            && self.capacity.tasks != TaskControl::Daemon
        {
            let n = n.min(max_instances * tpi);
            if n != self.desired_tasks {
                self.desired_tasks = n;
                self.scaling_actions += 1;
            }
        }
        self.reconcile();
        if (self.desired_tasks, self.desired_instances) != before {
            self.decisions.push(DecisionRecord {
                t_secs: self.now as f64 / 1000.0,
                desired_tasks: self.desired_tasks,
                desired_instances: self.desired_instances,
                reason: command.reason,
                calls: Vec::new(),
            });
        }
    }

    /// Brings the service and the group towards their desired sizes.
    fn reconcile(&mut self) {
        match self.capacity.tasks {
            TaskControl::Daemon => {
                self.reconcile_instances();
                self.desired_tasks = self.desired_instances * self.model.tasks_per_instance;
            }
            TaskControl::Service { stop_order, .. } => {
                self.reconcile_service(stop_order);
                self.reconcile_instances();
                self.place_unplaced();
            }
        }
    }

    /// The group towards its desired capacity. An interrupted Spot instance is not part of
    /// it: the group replaces it at the notice (capacity rebalancing) and never picks it as
    /// a scale-in victim, EC2 takes it anyway.
    fn reconcile_instances(&mut self) {
        let live = self.serving_mix().1;
        match self.capacity.instances {
            InstanceControl::AsgChoosesVictim => {
                for _ in live..self.desired_instances {
                    self.launch_instance();
                }
                for _ in self.desired_instances..live {
                    let candidates: Vec<usize> = self
                        .live_instances
                        .iter()
                        .copied()
                        .filter(|&i| self.instances[i].interrupted_ms.is_none())
                        .collect();
                    let victim = candidates[self.rng.below(candidates.len())];
                    self.terminate_instance(victim);
                }
            }
            InstanceControl::ClusterAutoscaler { .. } => {
                self.desired_instances = live;
            }
        }
        self.maintain_warm_pool();
    }

    fn reconcile_service(&mut self, stop_order: StopOrder) {
        let live = self.live_tasks.len() as u32;
        for _ in live..self.desired_tasks {
            self.new_task();
        }
        if live <= self.desired_tasks {
            return;
        }
        let excess = (live - self.desired_tasks) as usize;
        let rank = |s: &TaskState| match s {
            TaskState::Unplaced => 0,
            TaskState::Starting => 1,
            _ => 2,
        };
        let mut candidates: Vec<usize> = self
            .live_tasks
            .iter()
            .copied()
            .filter(|&t| !self.tasks[t].protected)
            .collect();
        match stop_order {
            StopOrder::NewestFirst => candidates.sort_by_key(|&t| {
                (
                    rank(&self.tasks[t].state),
                    Reverse(self.tasks[t].created_ms),
                    Reverse(t),
                )
            }),
            StopOrder::Arbitrary => {
                // Not-yet-running tasks first, then a seeded shuffle of the rest.
                let mut keyed: Vec<(u8, u64, usize)> = candidates
                    .iter()
                    .map(|&t| (rank(&self.tasks[t].state), self.rng.next_u64(), t))
                    .collect();
                keyed.sort();
                candidates = keyed.into_iter().map(|(_, _, t)| t).collect();
            }
        }
        for task in candidates.into_iter().take(excess) {
            self.stop_task(task);
        }
    }

    fn place_unplaced(&mut self) {
        let tpi = self.model.tasks_per_instance as usize;
        let unplaced: Vec<usize> = self
            .live_tasks
            .iter()
            .copied()
            .filter(|&t| self.tasks[t].state == TaskState::Unplaced)
            .collect();
        for task in unplaced {
            // Fill the lowest-numbered instance first, which keeps others empty and
            // removable.
            let slot = self.live_instances.iter().copied().find(|&i| {
                self.instances[i].state == InstanceState::InService
                    && !self.instances[i].draining
                    && self.instances[i].tasks.len() < tpi
            });
            match slot {
                Some(i) => self.place(task, i),
                None => break,
            }
        }
    }

    fn node_scan(&mut self, unneeded_ms: Millis, delay_after_add_ms: Millis) {
        let tpi = self.model.tasks_per_instance as usize;
        let unplaced = self
            .live_tasks
            .iter()
            .filter(|&&t| self.tasks[t].state == TaskState::Unplaced)
            .count();
        let booting_slots = self
            .live_instances
            .iter()
            .filter(|&&i| {
                self.instances[i].state == InstanceState::Booting
                    && self.instances[i].interrupted_ms.is_none()
            })
            .count()
            * tpi;
        // Interrupted instances are on their way out and not capacity: no room taken.
        let room =
            (self.model.max_instances as usize).saturating_sub(self.serving_mix().1 as usize);
        let needed = unplaced
            .saturating_sub(booting_slots)
            .div_ceil(tpi)
            .min(room);
        if needed > 0 {
            for _ in 0..needed {
                self.launch_instance();
            }
            self.last_node_add_ms = Some(self.now);
            self.scaling_actions += 1;
        }
        let recently_added = self
            .last_node_add_ms
            .is_some_and(|t| self.now < t + delay_after_add_ms);
        if !recently_added {
            let removable: Vec<usize> = self
                .live_instances
                .iter()
                .copied()
                .filter(|&i| {
                    let inst = &self.instances[i];
                    inst.state == InstanceState::InService
                        && inst.interrupted_ms.is_none()
                        && inst.tasks.is_empty()
                        && inst
                            .empty_since_ms
                            .is_some_and(|since| self.now >= since + unneeded_ms)
                })
                .collect();
            if !removable.is_empty() {
                for i in removable {
                    self.terminate_instance(i);
                }
                self.scaling_actions += 1;
            }
        }
        self.desired_instances = self.serving_mix().1;
    }

    // ---- observation and accounting ---------------------------------------------------

    /// What a modelled autoscaler observes now.
    pub fn view(&self) -> ClusterView<'_> {
        let lag = secs(self.model.cloudwatch_lag_secs);
        let published = self
            .cloudwatch
            .partition_point(|p| p.period_end_ms + lag <= self.now);
        let pending = self
            .live_tasks
            .iter()
            .filter(|&&t| {
                matches!(
                    self.tasks[t].state,
                    TaskState::Unplaced | TaskState::Starting
                )
            })
            .count() as u32;
        let running = self.running_tasks();
        let in_service = self.in_service_instances();
        ClusterView {
            now_ms: self.now,
            queue: QueueView {
                visible: self.visible.len() as u32,
                in_flight: self.in_flight,
                delayed: 0,
            },
            cloudwatch: &self.cloudwatch[..published],
            desired_tasks: self.desired_tasks,
            running_tasks: running,
            pending_tasks: pending,
            desired_instances: self.desired_instances,
            instances: self.serving_mix().1,
            in_service_instances: in_service,
            max_instances: self.model.max_instances,
            tasks_per_instance: self.model.tasks_per_instance,
        }
    }

    fn close_minute(&mut self) {
        let in_service = self.in_service_instances();
        self.cloudwatch.push(CloudWatchPoint {
            period_end_ms: self.now,
            visible_max: self.minute_visible_max,
            not_visible_max: self.minute_not_visible_max,
            empty_receives: self.minute_empty_receives,
            in_service_instances: in_service,
        });
        self.minute_visible_max = self.visible.len() as u32;
        self.minute_not_visible_max = self.in_flight;
        self.minute_empty_receives = 0;
    }

    fn sample(&mut self) {
        self.samples.push(Sample {
            t_ms: self.now,
            visible: self.visible.len() as u32,
            in_flight: self.in_flight,
            desired_tasks: self.desired_tasks,
            running_tasks: self.running_tasks(),
            instances: self.live_instances.len() as u32,
        });
    }

    /// Workers that run (idle, busy, or finishing after a stop), wherever they are.
    fn running_tasks(&self) -> u32 {
        self.live_instances
            .iter()
            .flat_map(|&i| self.instances[i].tasks.iter())
            .filter(|&&t| {
                matches!(
                    self.tasks[t].state,
                    TaskState::Running | TaskState::Stopping
                )
            })
            .count() as u32
    }

    fn check_conservation(&self) -> Result<(), SimError> {
        let accounted = self.not_yet_sent
            + self.visible.len()
            + self.in_flight as usize
            + self.completed
            + self.dead_lettered;
        if accounted != self.messages.len() {
            return Err(SimError::Conservation {
                at_secs: self.now as f64 / 1000.0,
                detail: format!(
                    "{} not yet sent + {} visible + {} in flight + {} completed + {} dead-lettered = {accounted}, expected {}",
                    self.not_yet_sent,
                    self.visible.len(),
                    self.in_flight,
                    self.completed,
                    self.dead_lettered,
                    self.messages.len()
                ),
            });
        }
        Ok(())
    }

    /// At the end every message must be completed exactly once or in the DLQ, and the
    /// per-message states must agree with the running counters.
    fn final_audit(&self) -> Result<(), SimError> {
        let completed = self
            .messages
            .iter()
            .filter(|m| m.state == MsgState::Completed)
            .count();
        let dlq = self
            .messages
            .iter()
            .filter(|m| m.state == MsgState::DeadLettered)
            .count();
        if completed != self.completed
            || dlq != self.dead_lettered
            || completed + dlq != self.messages.len()
            || self.latencies_ms.len() != completed
        {
            return Err(SimError::Conservation {
                at_secs: self.now as f64 / 1000.0,
                detail: format!(
                    "{completed} messages completed ({} counted, {} latencies), {dlq} dead-lettered ({} counted), {} in the scenario",
                    self.completed,
                    self.latencies_ms.len(),
                    self.dead_lettered,
                    self.messages.len()
                ),
            });
        }
        Ok(())
    }

    fn outcome(&self) -> RunOutcome {
        let minimum = secs(self.model.billing_minimum_secs);
        let billed_as = |on_demand: bool| -> Millis {
            self.instances
                .iter()
                .filter(|i| i.on_demand == on_demand)
                .map(|i| (i.ended_ms.unwrap_or(self.now) - i.launched_ms).max(minimum))
                .sum()
        };
        let mut market = self.market.clone();
        market.on_demand_instance_ms = billed_as(true);
        market.spot_instance_ms = billed_as(false);
        self.close_warm_books(&mut market);
        let billed = market.on_demand_instance_ms + market.spot_instance_ms;
        let first_upload = self.messages.iter().map(|m| m.upload_ms).min().unwrap_or(0);
        RunOutcome {
            latencies_ms: self.latencies_ms.clone(),
            completed: self.completed,
            dead_lettered: self.dead_lettered,
            total: self.messages.len(),
            makespan_ms: self.last_completion_ms.saturating_sub(first_upload),
            billed_instance_ms: billed,
            idle_instance_ms: self.idle_instance_ms,
            interrupted_tasks: self.interrupted_tasks,
            work_redone_ms: self.work_redone_ms,
            market,
            scaling_actions: self.scaling_actions,
            instances_launched: self.instances.len() as u32,
            end_ms: self.now,
            samples: self.samples.clone(),
            decisions: self.decisions.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::FileUpload;

    fn scenario() -> Scenario {
        Scenario {
            name: "t".into(),
            description: String::new(),
            horizon_ms: 1000,
            files: vec![FileUpload {
                upload_ms: 0,
                size_mb: 1.0,
                processing_ms: 1000,
            }],
        }
    }

    #[test]
    fn conservation_check_fails_loudly_when_a_message_goes_missing() {
        let scenario = scenario();
        let model = ModelParams::default();
        let capacity = Capacity {
            tasks: TaskControl::Daemon,
            instances: InstanceControl::AsgChoosesVictim,
        };
        let driver = Driver {
            name: "test",
            min_instances: 0,
        };
        let mut world = World::new(&scenario, &model, capacity, driver, 1);
        assert_eq!(world.check_conservation(), Ok(()));
        world.not_yet_sent = 0;
        let err = world.check_conservation().expect_err("a message vanished");
        assert!(err.to_string().contains("expected 1"), "{err}");
        world.completed = 1;
        assert_eq!(world.check_conservation(), Ok(()));
        let err = world
            .final_audit()
            .expect_err("counted but never completed");
        assert!(matches!(err, SimError::Conservation { .. }));
    }

    /// One instance, always: the classic layout, so only the worker model is at work.
    struct OneInstance;

    impl Autoscaler for OneInstance {
        fn name(&self) -> &'static str {
            "one-instance"
        }

        fn capacity(&self) -> Capacity {
            Capacity {
                tasks: TaskControl::Daemon,
                instances: InstanceControl::AsgChoosesVictim,
            }
        }

        fn interval_ms(&self) -> Millis {
            60_000
        }

        fn min_instances(&self) -> u32 {
            1
        }

        fn evaluate(&mut self, _view: &ClusterView<'_>) -> Command {
            Command {
                desired_tasks: None,
                desired_instances: Some(1),
                reason: "one".into(),
            }
        }
    }

    /// Latencies, in whole seconds after the worker started polling, of four 100 s files
    /// uploaded at once onto one instance.
    fn four_files(tasks_per_instance: u32, slots_per_task: u32, vcpus: u32) -> Vec<u64> {
        let scenario = Scenario {
            name: "four".into(),
            description: String::new(),
            horizon_ms: 1000,
            files: (0..4)
                .map(|_| FileUpload {
                    upload_ms: 0,
                    size_mb: 1.0,
                    processing_ms: 100_000,
                })
                .collect(),
        };
        let model = ModelParams {
            s3_event_delay_secs: 0.0,
            tasks_per_instance,
            slots_per_task,
            vcpus_per_instance: vcpus,
            ..ModelParams::default()
        };
        after_ready(&scenario, &model)
    }

    /// The latencies of a run on [`OneInstance`], sorted, in whole seconds after its worker
    /// started polling.
    fn after_ready(scenario: &Scenario, model: &ModelParams) -> Vec<u64> {
        let outcome = run(scenario, model, &mut OneInstance, 1).expect("balances");
        let ready_ms = secs(model.instance_boot_secs + model.task_start_secs);
        let mut after: Vec<u64> = outcome
            .latencies_ms
            .iter()
            .map(|l| (l - ready_ms).div_ceil(1000))
            .collect();
        after.sort_unstable();
        after
    }

    #[test]
    fn a_task_runs_up_to_its_slots_and_files_share_the_vcpus() {
        // 2 tasks x 2 slots: all four at once, at half speed on 2 vCPUs.
        assert_eq!(four_files(2, 2, 2), [200, 200, 200, 200]);
        // The same slots with a vCPU each: full speed.
        assert_eq!(four_files(2, 2, 4), [100, 100, 100, 100]);
        // One slot per task: two at a time at full speed, then the other two.
        assert_eq!(four_files(2, 1, 2), [100, 100, 200, 200]);
        // One task of four slots on one vCPU: a quarter speed each.
        assert_eq!(four_files(1, 4, 1), [400, 400, 400, 400]);
    }

    #[test]
    fn a_file_speeds_up_when_a_neighbour_finishes() {
        // One 2-slot task on one vCPU: a 50 s and a 100 s file share it until the short one
        // is done (at 100 s, having had half the vCPU); the long one then has 50 s of work
        // left at full speed.
        let scenario = Scenario {
            name: "two".into(),
            description: String::new(),
            horizon_ms: 1000,
            files: [50_000, 100_000]
                .into_iter()
                .map(|processing_ms| FileUpload {
                    upload_ms: 0,
                    size_mb: 1.0,
                    processing_ms,
                })
                .collect(),
        };
        let model = ModelParams {
            s3_event_delay_secs: 0.0,
            tasks_per_instance: 1,
            slots_per_task: 2,
            vcpus_per_instance: 1,
            ..ModelParams::default()
        };
        assert_eq!(after_ready(&scenario, &model), [100, 150]);
    }
}
