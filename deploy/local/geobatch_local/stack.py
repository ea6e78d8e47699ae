"""Deploys the production CloudFormation template into the emulator.

moto's CloudFormation creates most of the stack for real (buckets, queues, IAM roles, the
ECS cluster, task definition and service, launch templates, Auto Scaling Groups), but it
skips some resource types and some bucket properties. `deploy` finds out which, by reading
the deployed state back, and applies those parts of the template with direct API calls, so
the local pipeline runs with the template's own notification filter and policies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError

from . import template as cfn
from .emulator import ACCOUNT_ID, REGION, Emulator

TEMPLATE = Path(__file__).resolve().parents[2] / "cloudformation" / "geobatch.yaml"


@dataclass
class Stack:
    """What the deployed stack is made of, as its outputs name it."""

    name: str
    outputs: dict[str, str]
    physical_ids: dict[str, str]
    applied: list[str] = field(default_factory=list)

    @property
    def input_bucket(self) -> str:
        return self.outputs["InputBucketName"]

    @property
    def input_prefix(self) -> str:
        return self.outputs["InputPrefix"]

    @property
    def output_bucket(self) -> str:
        return self.outputs["OutputBucketName"]

    @property
    def output_prefix(self) -> str:
        location = self.outputs["OutputLocation"]
        return location.split("/", 3)[3]

    @property
    def cluster(self) -> str:
        return self.outputs["ClusterName"]

    @property
    def service(self) -> str:
        return self.outputs["ServiceName"]

    @property
    def worker_group(self) -> str:
        return self.outputs["WorkerAutoScalingGroupName"]

    @property
    def tasks_per_instance(self) -> int:
        return int(self.outputs["TasksPerInstance"])

    @property
    def stop_timeout_secs(self) -> int:
        return int(self.outputs["WorkerStopTimeoutSeconds"])

    @property
    def queue_url(self) -> str:
        return self.outputs["QueueUrl"]

    @property
    def dlq_url(self) -> str:
        return self.outputs["DeadLetterQueueUrl"]


def default_network(emulator: Emulator) -> tuple[str, list[str]]:
    """The emulator's default VPC and its subnets, for the VpcId and SubnetIds parameters."""
    ec2 = emulator.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    return vpc, sorted(s["SubnetId"] for s in subnets)[:2]


def deploy(
    emulator: Emulator,
    stack_name: str,
    parameters: dict[str, str],
    report: Callable[[str], None] = print,
    template_path: Path = TEMPLATE,
) -> Stack:
    """Creates the stack, then applies what the emulator left out; returns the stack."""
    body = template_path.read_text()
    template = cfn.load(template_path)
    vpc, subnets = default_network(emulator)
    values = {"VpcId": vpc, "SubnetIds": ",".join(subnets), **parameters}
    cloudformation = emulator.client("cloudformation")
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    description = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    if description["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(
            f"stack {stack_name} is {description['StackStatus']}: {description.get('StackStatusReason')}"
        )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    physical_ids = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
        if r.get("LogicalResourceId") and r.get("PhysicalResourceId")
    }
    stack = Stack(stack_name, outputs, physical_ids)
    created = sorted(physical_ids)
    report(f"CloudFormation created {len(created)} of {len(template['Resources'])} resources: {', '.join(created)}")
    _apply_ignored(emulator, template, values, stack, report)
    return stack


def _resolver(emulator: Emulator, template: dict[str, Any], values: dict[str, str], stack: Stack) -> cfn.Resolver:
    resources = template["Resources"]
    pseudo = {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT_ID, "AWS::Region": REGION, "AWS::StackName": stack.name}

    def ref(name: str) -> str:
        if name in pseudo:
            return pseudo[name]
        if name in values:
            return values[name]
        if name in template.get("Parameters", {}):
            return str(template["Parameters"][name]["Default"])
        if name in stack.physical_ids:
            return stack.physical_ids[name]
        raise KeyError(f"Ref {name}: not a parameter nor a created resource")

    def get_att(logical_id: str, attribute: str) -> str:
        kind = resources[logical_id]["Type"]
        if attribute == "Arn" and kind == "AWS::SQS::Queue":
            sqs = emulator.client("sqs")
            attrs = sqs.get_queue_attributes(QueueUrl=ref(logical_id), AttributeNames=["QueueArn"])
            return attrs["Attributes"]["QueueArn"]
        if attribute == "Arn" and kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{ref(logical_id)}"
        if attribute == "Name" and kind == "AWS::ECS::Service":
            return ref(logical_id).rsplit("/", 1)[-1]
        raise cfn.UnsupportedIntrinsic(f"Fn::GetAtt {logical_id}.{attribute} ({kind})")

    return cfn.Resolver(ref, get_att)


def controller_config(emulator: Emulator, stack: Stack, parameters: dict[str, str]) -> str:
    """The controller.toml that the stack's controller instance would write at boot.

    It is taken from the controller launch template's user data, resolved against the
    deployed stack, so the local controller runs with exactly the production settings
    (only the parameters differ).
    """
    template = cfn.load(TEMPLATE)
    vpc, subnets = default_network(emulator)
    values = {"VpcId": vpc, "SubnetIds": ",".join(subnets), **parameters}
    user_data = template["Resources"]["ControllerLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    script = _resolver(emulator, template, values, stack).resolve(user_data["Fn::Base64"])
    start = "cat > /etc/geobatch/controller.toml <<'TOML'\n"
    body = script[script.index(start) + len(start) :]
    return body[: body.index("\nTOML\n") + 1]


def _apply_ignored(
    emulator: Emulator, template: dict[str, Any], values: dict[str, str], stack: Stack, report: Callable[[str], None]
) -> None:
    resolver = _resolver(emulator, template, values, stack)
    s3 = emulator.client("s3")
    sqs = emulator.client("sqs")

    def applied(what: str) -> None:
        stack.applied.append(what)
        report(f"  the emulator ignored {what}: applied it with a direct API call")

    for logical_id, resource in template["Resources"].items():
        kind = resource["Type"]
        props = resolver.resolve(resource.get("Properties", {})) if kind.startswith(("AWS::S3::", "AWS::SQS::QueuePolicy")) else {}
        if kind == "AWS::SQS::QueuePolicy" and logical_id not in stack.physical_ids:
            for queue_url in props["Queues"]:
                sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
            applied(f"{logical_id} (AWS::SQS::QueuePolicy, SetQueueAttributes Policy)")
        elif kind == "AWS::S3::BucketPolicy" and logical_id not in stack.physical_ids:
            document, tls_only = _without_tls_only_statements(props["PolicyDocument"])
            if tls_only:
                report(
                    f"  the emulator ignored {logical_id} (AWS::S3::BucketPolicy); not applied locally: its "
                    f"{', '.join(tls_only)} statement denies plain-HTTP requests, and the emulator is "
                    "reached over plain HTTP on loopback (moto enforces it)"
                )
            if document["Statement"]:
                s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))
                applied(f"{logical_id} (AWS::S3::BucketPolicy, PutBucketPolicy)")
        elif kind == "AWS::S3::Bucket":
            _apply_bucket_properties(s3, logical_id, stack.physical_ids[logical_id], props, applied)
        elif kind == "AWS::AutoScaling::AutoScalingGroup" and resource["Properties"].get("CapacityRebalance") is True:
            report(
                f"  the emulator ignored {logical_id}.CapacityRebalance; not applied locally: moto's "
                "UpdateAutoScalingGroup cannot round-trip the mixed instances policy, and nothing local "
                "emulates rebalancing"
            )
        elif kind == "AWS::AutoScaling::WarmPool" and logical_id not in stack.physical_ids:
            condition = resource.get("Condition")
            if condition is None or resolver.condition(condition, template.get("Conditions", {})):
                warm_pool = resolver.resolve(resource["Properties"])
                emulator.client("autoscaling").put_warm_pool(**_warm_pool_api_shape(warm_pool))
                applied(f"{logical_id} (AWS::AutoScaling::WarmPool, PutWarmPool)")


def _warm_pool_api_shape(props: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's AWS::AutoScaling::WarmPool properties → PutWarmPool's parameters."""
    known = {"AutoScalingGroupName", "PoolState", "MinSize", "MaxGroupPreparedCapacity", "InstanceReusePolicy"}
    if set(props) - known:
        raise cfn.UnsupportedIntrinsic(f"warm pool properties {sorted(set(props) - known)}")
    shape = {k: v for k, v in props.items() if k in {"AutoScalingGroupName", "PoolState", "InstanceReusePolicy"}}
    shape.update({k: int(props[k]) for k in ("MinSize", "MaxGroupPreparedCapacity") if k in props})
    return shape


def _apply_bucket_properties(s3, logical_id: str, bucket: str, props: dict[str, Any], applied: Callable[[str], None]) -> None:
    notification = props.get("NotificationConfiguration")
    if notification:
        current = s3.get_bucket_notification_configuration(Bucket=bucket)
        if not current.get("QueueConfigurations"):
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration=_notification_api_shape(notification)
            )
            applied(f"{logical_id}.NotificationConfiguration (PutBucketNotificationConfiguration)")

    block = props.get("PublicAccessBlockConfiguration")
    if block and _missing(lambda: s3.get_public_access_block(Bucket=bucket), "NoSuchPublicAccessBlockConfiguration"):
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
        applied(f"{logical_id}.PublicAccessBlockConfiguration (PutPublicAccessBlock)")

    lifecycle = props.get("LifecycleConfiguration")
    if lifecycle and _missing(lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket), "NoSuchLifecycleConfiguration"):
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [_lifecycle_rule_api_shape(r) for r in lifecycle["Rules"]]}
        )
        applied(f"{logical_id}.LifecycleConfiguration (PutBucketLifecycleConfiguration)")

    ownership = props.get("OwnershipControls")
    if ownership and _missing(lambda: s3.get_bucket_ownership_controls(Bucket=bucket), "OwnershipControlsNotFoundError"):
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=ownership)
        applied(f"{logical_id}.OwnershipControls (PutBucketOwnershipControls)")


def _without_tls_only_statements(document: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Splits off the statements that deny requests without TLS (``aws:SecureTransport``)."""
    kept, dropped = [], []
    for statement in document["Statement"]:
        condition = statement.get("Condition", {}).get("Bool", {})
        if statement.get("Effect") == "Deny" and str(condition.get("aws:SecureTransport")).lower() == "false":
            dropped.append(statement.get("Sid", "unnamed"))
        else:
            kept.append(statement)
    return {**document, "Statement": kept}, dropped


def _missing(read: Callable[[], Any], not_found_code: str) -> bool:
    try:
        read()
        return False
    except ClientError as err:
        if err.response["Error"]["Code"] == not_found_code:
            return True
        raise


def _notification_api_shape(notification: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's NotificationConfiguration → PutBucketNotificationConfiguration's."""
    if set(notification) - {"QueueConfigurations"}:
        raise cfn.UnsupportedIntrinsic(f"notification kinds {sorted(notification)}: only queues are applied")
    configurations = []
    for entry in notification["QueueConfigurations"]:
        api: dict[str, Any] = {"QueueArn": entry["Queue"], "Events": [entry["Event"]]}
        rules = entry.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        if rules:
            api["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
        configurations.append(api)
    return {"QueueConfigurations": configurations}


def _lifecycle_rule_api_shape(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule → the S3 API's (only the fields the template uses)."""
    known = {"Id", "Status", "ExpirationInDays", "AbortIncompleteMultipartUpload", "Prefix"}
    if set(rule) - known:
        raise cfn.UnsupportedIntrinsic(f"lifecycle rule fields {sorted(set(rule) - known)}")
    api: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    return api
