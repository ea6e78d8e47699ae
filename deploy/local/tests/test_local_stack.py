"""The local stack against a real moto server: template deployment and the agent stand-in.

These tests start the pinned moto server from .venv (run `make venv`); without it they fail
with that instruction, they never skip. The agent is exercised with a tiny stand-in task
program (below) so its behaviour is checked apart from the real worker's.
"""

import json
import sys
import tempfile
import textwrap
import time
import unittest
import urllib.parse
import urllib.request
from pathlib import Path

from geobatch_local import stack as stack_module
from geobatch_local.agent import EcsAgentStandIn
from geobatch_local.emulator import Emulator, base_env
from geobatch_local.pipeline import VENV_MOTO
from geobatch_local.processes import Supervisor, wait_until
from geobatch_local.runners import ProcessRunner

# A task that reports busy (protected) while /tmp/<dir>/busy-<task id> exists, idle otherwise,
# and exits 0 on SIGTERM.
TASK_PROGRAM = textwrap.dedent(
    """
    import json, os, signal, sys, time, urllib.request
    uri = os.environ["ECS_AGENT_URI"]
    flag = os.path.join(sys.argv[1], "busy-" + uri.rsplit("/", 1)[-1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    state = None
    while True:
        busy = os.path.exists(flag)
        if busy != state:
            body = json.dumps({"ProtectionEnabled": busy, "ExpiresInMinutes": 5}).encode()
            request = urllib.request.Request(uri + "/task-protection/v1/state", data=body, method="PUT")
            urllib.request.urlopen(request).read()
            state = busy
        time.sleep(0.1)
    """
)


class LocalStackTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not VENV_MOTO.is_file():
            raise AssertionError(f"moto_server not found at {VENV_MOTO}: run `make venv` (these tests never skip)")
        cls.supervisor = Supervisor()
        cls.log = tempfile.TemporaryFile()
        cls.emulator = Emulator.start(cls.supervisor, VENV_MOTO, cls.log)

    @classmethod
    def tearDownClass(cls):
        cls.supervisor.stop_all()
        cls.log.close()

    def deploy(self, name, **parameters):
        messages = []
        values = {"NamePrefix": name, "WorkerImage": "worker:test", "ControllerImage": "controller:test", **parameters}
        return stack_module.deploy(self.emulator, name, values, report=messages.append), messages, values

    def test_template_deploys_and_what_moto_ignores_is_applied_and_reported(self):
        stack, messages, _ = self.deploy("lst-deploy")
        s3, sqs = self.emulator.client("s3"), self.emulator.client("sqs")
        self.assertTrue(any("JobQueuePolicy" in m for m in messages), messages)
        self.assertTrue(any("NotificationConfiguration" in m for m in messages), messages)
        policy = json.loads(sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["Policy"])["Attributes"]["Policy"])
        allow = policy["Statement"][0]
        self.assertEqual(allow["Condition"]["ArnEquals"]["aws:SourceArn"], f"arn:aws:s3:::{stack.input_bucket}")
        self.assertEqual(allow["Condition"]["StringEquals"]["aws:SourceAccount"], "123456789012")
        redrive = json.loads(sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
        self.assertEqual(int(redrive["maxReceiveCount"]), 5)

        # The notification filter is the template's: only .geojson under the input prefix.
        sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10)  # the s3:TestEvent
        s3.put_object(Bucket=stack.input_bucket, Key="incoming/a b+c.geojson", Body=b"{}")
        s3.put_object(Bucket=stack.input_bucket, Key="elsewhere/x.geojson", Body=b"{}")
        s3.put_object(Bucket=stack.input_bucket, Key="incoming/x.json", Body=b"{}")
        keys = []
        for _ in range(3):
            for message in sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                body = json.loads(message["Body"])
                keys += [r["s3"]["object"]["key"] for r in body.get("Records", [])]
        # Event keys are URL-encoded (moto also encodes "/", which S3 does not).
        self.assertEqual([urllib.parse.unquote_plus(k) for k in keys], ["incoming/a b+c.geojson"])
        self.assertIn("a+b%2Bc", keys[0])

    def test_the_worker_group_launches_spot_from_several_types_by_default(self):
        stack, _, _ = self.deploy("lst-spot")
        autoscaling = self.emulator.client("autoscaling")
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.worker_group])["AutoScalingGroups"][0]
        policy = group["MixedInstancesPolicy"]
        distribution = policy["InstancesDistribution"]
        self.assertEqual(distribution["OnDemandBaseCapacity"], 0)
        self.assertEqual(distribution["OnDemandPercentageAboveBaseCapacity"], 0)
        self.assertEqual(distribution["SpotAllocationStrategy"], "price-capacity-optimized")
        types = [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]]
        self.assertEqual(types, ["c7i.large", "c6i.large", "c6a.large", "c7a.large"])
        self.assertEqual(autoscaling.describe_warm_pool(AutoScalingGroupName=stack.worker_group).get("WarmPoolConfiguration"), None)

    def test_fewer_alternative_types_and_an_on_demand_base_are_parameters(self):
        stack, _, _ = self.deploy(
            "lst-types", WorkerAlternativeInstanceTypes="m7i.large", OnDemandBaseCapacity="1", OnDemandPercentageAboveBaseCapacity="25"
        )
        autoscaling = self.emulator.client("autoscaling")
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.worker_group])["AutoScalingGroups"][0]
        policy = group["MixedInstancesPolicy"]
        self.assertEqual([o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]], ["c7i.large", "m7i.large"])
        self.assertEqual(policy["InstancesDistribution"]["OnDemandBaseCapacity"], 1)
        self.assertEqual(policy["InstancesDistribution"]["OnDemandPercentageAboveBaseCapacity"], 25)

    def test_the_warm_pool_keeps_stopped_on_demand_instances(self):
        stack, _, _ = self.deploy(
            "lst-warm", WarmPool="on", OnDemandPercentageAboveBaseCapacity="100", WarmPoolMinSize="2", WarmPoolMaxGroupPreparedCapacity="3"
        )
        autoscaling = self.emulator.client("autoscaling")
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[stack.worker_group])["AutoScalingGroups"][0]
        # moto reports an empty policy where AWS reports none.
        self.assertFalse(group.get("MixedInstancesPolicy"))
        pool = autoscaling.describe_warm_pool(AutoScalingGroupName=stack.worker_group)["WarmPoolConfiguration"]
        self.assertEqual(pool["PoolState"], "Stopped")
        self.assertEqual(pool["MinSize"], 2)
        self.assertEqual(pool["MaxGroupPreparedCapacity"], 3)

    def test_controller_config_comes_from_the_templates_user_data(self):
        stack, _, values = self.deploy("lst-config", MaxTasks="7", PollIntervalSeconds="2")
        config = stack_module.controller_config(self.emulator, stack, values)
        self.assertIn('auto_scaling_group = "lst-config-workers"', config)
        self.assertIn('service = "lst-config-worker"', config)
        self.assertIn("max_tasks = 7", config)
        self.assertIn("poll_interval_secs = 2", config)
        self.assertIn(f'queue_url = "{stack.queue_url}"', config)

    def test_agent_runs_the_desired_count_and_stops_only_unprotected_tasks(self):
        stack, _, _ = self.deploy("lst-agent", TasksPerInstance="2", WorkerStopTimeoutSeconds="10")
        ecs, autoscaling = self.emulator.client("ecs"), self.emulator.client("autoscaling")
        with tempfile.TemporaryDirectory() as scratch:
            program = Path(scratch) / "task.py"
            program.write_text(TASK_PROGRAM)
            # Stand-in binary: a shell wrapper so the agent can run it like geobatch-worker.
            binary = Path(scratch) / "fake-worker"
            binary.write_text(f"#!/bin/sh\nexec {sys.executable} {program} {scratch}\n")
            binary.chmod(0o755)
            agent = EcsAgentStandIn(self.emulator, stack, ProcessRunner(binary, base_env()), Path(scratch), poll_secs=0.2)
            agent.start()
            try:
                autoscaling.set_desired_capacity(AutoScalingGroupName=stack.worker_group, DesiredCapacity=1)
                ecs.update_service(cluster=stack.cluster, service=stack.service, desiredCount=3)
                # One instance holds two tasks: capacity, not the desired count, limits.
                self.assertTrue(wait_until(lambda: agent.running_count() == 2, 20))
                time.sleep(1)
                self.assertEqual(agent.running_count(), 2)
                arns = ecs.list_container_instances(cluster=stack.cluster)["containerInstanceArns"]
                described = ecs.describe_container_instances(cluster=stack.cluster, containerInstances=arns)
                self.assertEqual([ci["runningTasksCount"] for ci in described["containerInstances"]], [2])

                busy, idle = sorted(agent.live_tasks(), key=lambda t: t.task_arn)
                (Path(scratch) / f"busy-{busy.task_id}").touch()
                self.assertTrue(wait_until(lambda: agent.protected_count() == 1, 10))
                with urllib.request.urlopen(f"{agent.protection_endpoint}/api/{busy.task_id}/task-protection/v1/state") as reply:
                    self.assertTrue(json.loads(reply.read())["protection"]["ProtectionEnabled"])

                ecs.update_service(cluster=stack.cluster, service=stack.service, desiredCount=0)
                self.assertTrue(wait_until(lambda: agent.running_count() == 1, 20))
                time.sleep(1)
                self.assertEqual([t.task_arn for t in agent.live_tasks()], [busy.task_arn], "the protected task keeps running")

                (Path(scratch) / f"busy-{busy.task_id}").unlink()
                self.assertTrue(wait_until(lambda: agent.running_count() == 0, 20))
                stops = [e for e in agent.events if e["event"] == "task-stopping"]
                self.assertEqual(sorted(e["task"] for e in stops), sorted([idle.task_id, busy.task_id]))
                self.assertFalse(any(e["protected"] for e in stops), stops)
                self.assertTrue(all(e["exit_code"] == 0 for e in agent.events if e["event"] == "task-stopped"))
            finally:
                agent.shutdown()


if __name__ == "__main__":
    unittest.main()
