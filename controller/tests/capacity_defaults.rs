//! One capacity model: the controller's defaults, the CloudFormation stack's parameter
//! defaults and the simulator's defaults describe the same deployment.
//!
//! The stack is read with a targeted parse rather than a YAML library: CloudFormation's
//! short-form tags (`!Ref`, `!Sub`) are not plain YAML, and all this needs is the
//! `Parameters` section's `Default:` values and the controller config the controller
//! instance's user data writes. That config, filled with the parameter defaults, must
//! validate to exactly the controller's default pool.

use std::collections::HashMap;
use std::path::Path;

use geobatch_controller::config::ConfigFile;
use geobatch_controller::policy::PoolPolicy;
use geobatch_controller::sim::GeobatchSettings;
use geobatch_controller::sim::model::ModelParams;

const STACK: &str = include_str!("../../deploy/cloudformation/geobatch.yaml");

/// `Parameters:` entries (two-space indent) and their `Default:` (four-space indent).
fn parameter_defaults(template: &str) -> HashMap<String, String> {
    let mut defaults = HashMap::new();
    let mut in_parameters = false;
    let mut current: Option<String> = None;
    for line in template.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_parameters = line.trim_end() == "Parameters:";
            current = None;
            continue;
        }
        if !in_parameters {
            continue;
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            current = Some(name.to_owned());
        } else if let (Some(name), Some(value)) = (&current, line.strip_prefix("    Default: ")) {
            defaults.insert(name.clone(), value.trim().trim_matches('"').to_owned());
        }
    }
    defaults
}

/// The controller config the user data writes, `${Name}` filled with parameter defaults
/// (and plausible values for the stack's own resources).
fn stack_controller_config(template: &str, defaults: &HashMap<String, String>) -> String {
    let start = "cat > /etc/geobatch/controller.toml <<'TOML'\n";
    let body = &template[template
        .find(start)
        .expect("the user data writes controller.toml")
        + start.len()..];
    let body = &body[..body.find("\n            TOML\n").expect("the heredoc ends")];
    let resources: HashMap<&str, &str> = [
        (
            "JobQueue",
            "https://sqs.us-east-1.amazonaws.com/123456789012/geobatch-jobs",
        ),
        ("Cluster", "geobatch"),
        ("WorkerService.Name", "geobatch-worker"),
        ("AWS::StackName", "geobatch"),
    ]
    .into();
    let mut filled = String::new();
    let mut rest = body;
    while let Some(at) = rest.find("${") {
        filled.push_str(&rest[..at]);
        let end = rest[at..].find('}').expect("closed substitution") + at;
        let name = &rest[at + 2..end];
        let value = defaults
            .get(name)
            .map(String::as_str)
            .or_else(|| resources.get(name).copied())
            .unwrap_or_else(|| panic!("no default for ${{{name}}}"));
        filled.push_str(value);
        rest = &rest[end + 1..];
    }
    filled.push_str(rest);
    filled
}

#[test]
fn the_stack_deploys_the_controllers_default_pool() {
    let defaults = parameter_defaults(STACK);
    assert_eq!(
        defaults.get("TasksPerInstance").map(String::as_str),
        Some("2")
    );
    let text = stack_controller_config(STACK, &defaults);
    let config = ConfigFile::parse(&text, Path::new("geobatch.yaml user data"))
        .expect("the stack's controller config parses")
        .validate()
        .expect("the stack's controller config is valid");
    let pool = &config.pools[0];
    assert_eq!(pool.policy, PoolPolicy::default(), "stack config:\n{text}");
    let reference = ConfigFile::parse(
        include_str!("../examples/controller.toml"),
        Path::new("controller.toml"),
    )
    .expect("example parses")
    .validate()
    .expect("example is valid");
    assert_eq!(pool.poll_interval, reference.pools[0].poll_interval);
}

#[test]
fn the_worker_runs_as_many_files_at_once_as_the_controller_counts_slots() {
    // The slots the controller sizes by and the worker's concurrency are one parameter.
    assert!(
        STACK.contains("slots_per_task = ${WorkerConcurrency}"),
        "the controller config must take slots_per_task from WorkerConcurrency"
    );
    assert!(
        STACK.contains("{ Name: GEOBATCH_CONCURRENCY, Value: !Ref WorkerConcurrency }"),
        "the worker's --concurrency must come from WorkerConcurrency"
    );
    let defaults = parameter_defaults(STACK);
    assert_eq!(
        defaults.get("WorkerConcurrency"),
        Some(&PoolPolicy::default().slots_per_task.to_string())
    );
    assert_eq!(
        defaults.get("MaxInstances"),
        Some(&PoolPolicy::default().max_instances.to_string())
    );
}

#[test]
fn the_simulator_models_the_same_fleet_by_default() {
    let model = ModelParams::default();
    let policy = PoolPolicy::default();
    assert_eq!(model.tasks_per_instance, policy.tasks_per_instance);
    assert_eq!(model.max_instances, policy.max_instances);
    assert_eq!(
        model.instance_boot_secs + model.task_start_secs,
        policy.cold_start.as_secs_f64(),
        "the controller's cold start is the simulated boot plus task start"
    );
    assert_eq!(
        GeobatchSettings::defaults_for(&model)
            .expect("the controller defaults are valid")
            .pool
            .policy,
        policy,
        "the simulator's geobatch is the controller's default pool"
    );
}

#[test]
fn the_simulator_bills_the_volume_the_stack_gives_each_instance() {
    let defaults = parameter_defaults(STACK);
    assert!(
        STACK.contains("VolumeSize: !Ref WorkerVolumeSizeGiB"),
        "the worker launch template must size its root volume from WorkerVolumeSizeGiB"
    );
    let volume: f64 = defaults
        .get("WorkerVolumeSizeGiB")
        .expect("the stack has WorkerVolumeSizeGiB")
        .parse()
        .expect("a number");
    assert_eq!(ModelParams::default().root_volume_gb, volume);
}

#[test]
fn the_targeted_parse_reads_defaults_and_only_defaults() {
    let template = "Parameters:\n  A:\n    Type: Number\n    Default: 3\n  B:\n    Type: String\n    \
                    Default: \"x\"\n  C:\n    Type: Number\nResources:\n  D:\n    Default: 9\n";
    let defaults = parameter_defaults(template);
    assert_eq!(defaults.get("A").map(String::as_str), Some("3"));
    assert_eq!(defaults.get("B").map(String::as_str), Some("x"));
    assert_eq!(defaults.get("C"), None);
    assert_eq!(defaults.get("D"), None, "outside Parameters");
}
