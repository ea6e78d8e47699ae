"""The template agrees with the programs it deploys.

These catch drift between deploy/ and the binaries: a renamed worker variable, a controller
config field the controller no longer accepts, a unit path the image does not have. They
need the debug binaries (`cargo build -p geobatch-worker -p geobatch-controller`, which
`make deploy-unit` runs first) and fail, never skip, without them.
"""

import re
import subprocess
import tempfile
import unittest
from pathlib import Path

from geobatch_local import template as cfn
from geobatch_local.stack import TEMPLATE

ROOT = Path(__file__).resolve().parents[3]
WORKER = ROOT / "target" / "debug" / "geobatch-worker"
CONTROLLER = ROOT / "target" / "debug" / "geobatch-controller"


def binary(path: Path) -> Path:
    if not path.is_file():
        raise AssertionError(f"{path} is missing: run `cargo build -p {path.name}` (this test never skips)")
    return path


class TemplateAgreesWithTheProgramsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = cfn.load(TEMPLATE)
        cls.resources = cls.template["Resources"]

    def test_every_worker_variable_in_the_task_definition_is_one_the_worker_reads(self):
        container = self.resources["WorkerTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
        names = [e["Name"] for e in container["Environment"] if e["Name"].startswith("GEOBATCH_")]
        self.assertGreaterEqual(len(names), 5)
        help_text = subprocess.run([binary(WORKER), "run", "--help"], capture_output=True, text=True, check=True).stdout
        for name in names:
            self.assertIn(f"[env: {name}=", help_text, f"{name} is set by the task definition but unknown to geobatch-worker run")
        self.assertEqual(container["Command"], ["run"])

    def test_the_scratch_budget_is_the_workers_default_and_fits_the_instance_volume(self):
        # Downloads of every task on an instance share its root volume: the stack's budget per
        # task must be the worker's own default, hold the largest object, and leave the OS room.
        params = self.template["Parameters"]
        container = self.resources["WorkerTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        self.assertEqual(env["GEOBATCH_SCRATCH_BUDGET"], {"Ref": "WorkerScratchBudgetBytes"})
        disk = self.resources["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["BlockDeviceMappings"][0]["Ebs"]
        self.assertEqual(disk["VolumeSize"], {"Ref": "WorkerVolumeSizeGiB"})
        help_text = subprocess.run([binary(WORKER), "run", "--help"], capture_output=True, text=True, check=True).stdout
        defaults = {}
        # One block per option: from its `--name <VALUE>` line to the next one.
        for block in re.split(r"\n(?=\s*(?:-\w, )?--[a-z-]+(?: <\w+>)?\n)", help_text):
            flag, default = re.match(r"\s*(?:-\w, )?--([a-z-]+)", block), re.search(r"\[default: (\d+)\]", block)
            if flag and default:
                defaults[flag.group(1)] = int(default.group(1))
        budget = int(params["WorkerScratchBudgetBytes"]["Default"])
        self.assertEqual(budget, defaults["scratch-budget"], "the stack and the worker disagree on the budget")
        self.assertGreaterEqual(budget, defaults["max-object-bytes"], "the largest object must fit the budget")
        tasks = int(params["TasksPerInstance"]["Default"])
        volume = int(params["WorkerVolumeSizeGiB"]["Default"]) * 2**30
        self.assertLessEqual(tasks * budget + 6 * 2**30, volume, "the tasks' downloads could fill the volume")

    def test_the_controller_accepts_the_config_the_user_data_writes(self):
        user_data = self.resources["ControllerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
        start = "cat > /etc/geobatch/controller.toml <<'TOML'\n"
        body = user_data[user_data.index(start) + len(start) :]
        toml = body[: body.index("\nTOML\n") + 1]
        # Fill the stack's substitutions with plausible values; the structure is what is tested.
        values = {
            "JobQueue": "https://sqs.eu-west-1.amazonaws.com/123456789012/geobatch-jobs",
            "WorkerService.Name": "geobatch-worker",
        }
        filled = re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), self._parameter_value(m.group(1))), toml)
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as config:
            config.write(filled)
            config.flush()
            checked = subprocess.run([binary(CONTROLLER), "check-config", config.name], capture_output=True, text=True)
        self.assertEqual(checked.returncode, 0, f"geobatch-controller check-config refused:\n{filled}\n{checked.stderr}")

    def _parameter_value(self, name: str) -> str:
        parameters = self.template["Parameters"]
        if name in parameters:
            return str(parameters[name]["Default"])
        return {"AWS::StackName": "geobatch", "Cluster": "geobatch-workers", "NamePrefix": "geobatch"}.get(name, name)

    def test_the_unit_the_user_data_installs_is_where_the_controller_image_puts_it(self):
        user_data = self.resources["ControllerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
        copied = re.search(r'docker cp "\$container:([^"]+)"', user_data).group(1)
        dockerfile = (ROOT / "deploy" / "docker" / "controller.Dockerfile").read_text()
        self.assertIn(f"COPY deploy/systemd/geobatch-controller.service {copied}", dockerfile)
        self.assertTrue((ROOT / "deploy" / "systemd" / "geobatch-controller.service").is_file())

    def test_queue_policy_scopes_senders_to_the_input_bucket_of_this_account(self):
        statement = self.resources["JobQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
        self.assertEqual(statement["Principal"], {"Service": "s3.amazonaws.com"})
        self.assertIn("aws:SourceArn", statement["Condition"]["ArnEquals"])
        self.assertIn("aws:SourceAccount", statement["Condition"]["StringEquals"])
        bucket_name = self.resources["InputBucket"]["Properties"]["BucketName"]["Fn::Sub"]
        self.assertTrue(statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"].endswith(bucket_name))

    def test_worker_role_grants_what_the_worker_calls_and_nothing_more(self):
        """Issue 12, classes 1, 6, 7 and 10: ListBucket on the input bucket alone (so S3 says
        404, not 403, for a missing input), GetObjectVersion (the version an event names),
        SendMessage (fresh copies at shutdown), and no DeleteObject (one outcome per source)."""
        policy = self.resources["WorkerTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        grants = {}
        for statement in policy["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            for action in actions:
                grants[action] = statement["Resource"]
        self.assertEqual(grants.get("s3:ListBucket"), {"Fn::GetAtt": ["InputBucket", "Arn"]})
        self.assertIn("InputBucket.Arn", grants["s3:GetObjectVersion"]["Fn::Sub"])
        self.assertEqual(grants["sqs:SendMessage"], {"Fn::GetAtt": ["JobQueue", "Arn"]})
        self.assertNotIn("s3:DeleteObject", grants)
        self.assertEqual(
            sorted(grants),
            sorted([
                "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:PutObject",
                "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes", "sqs:SendMessage",
                "ecs:UpdateTaskProtection", "ecs:GetTaskProtection",
            ]),
        )

    def test_spot_capacity_is_rebalanced_and_the_warm_pool_needs_on_demand(self):
        group = self.resources["WorkerGroup"]["Properties"]
        self.assertIs(group["CapacityRebalance"], True)
        rule = self.template["Rules"]["WarmPoolNeedsOnDemand"]
        self.assertEqual(rule["RuleCondition"], {"Fn::Equals": [{"Ref": "WarmPool"}, "on"]})
        self.assertEqual(rule["Assertions"][0]["Assert"], {"Fn::Equals": [{"Ref": "OnDemandPercentageAboveBaseCapacity"}, "100"]})
        self.assertEqual(self.resources["WorkerWarmPool"]["Condition"], "WarmPoolOn")
        user_data = self.resources["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
        self.assertIn("ECS_WARM_POOLS_CHECK=true", user_data)
        self.assertIn("ECS_ENABLE_SPOT_INSTANCE_DRAINING=true", user_data)

    def test_service_and_worker_group_start_at_zero(self):
        self.assertEqual(self.resources["WorkerService"]["Properties"]["DesiredCount"], 0)
        group = self.resources["WorkerGroup"]["Properties"]
        self.assertEqual(group["MinSize"], "0")
        self.assertNotIn("DesiredCapacity", group)


if __name__ == "__main__":
    unittest.main()
