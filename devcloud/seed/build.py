"""The demo world of devcloud.seed.plan, made through the AWS API.

Everything goes through boto3 against the endpoint (no moto internals), per account with
credentials from assuming the account's administrator role (``OrganizationAccountAccessRole``,
the role AWS Organizations makes in a member account). The portal's own role is created with
exactly the policy Passport ships, and devcloud enforces it on the portal's calls, so the seed
cannot work as the portal: the administrator role is never created in IAM, and a role moto's
IAM does not know has no policies for devcloud to check (tests that set up people and tags
assume it too: the manifest's ``admin_role_arn``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from devcloud.seed.plan import (
    CREDENTIALS,
    DEMO,
    HANDOFF_KEY_ALIAS,
    PORTAL_ACCOUNT,
    PORTAL_ROLE,
    PORTAL_ROLE_POLICY,
    REGION,
    SAML_PROVIDER,
    AccountPlan,
    FederatedRolePlan,
    InstancePlan,
    PersonPlan,
    policy_document,
)


def seed_demo(endpoint_url: str, state_dir: Path, *, sshd_port: Callable[[str], int] | None = None) -> dict[str, Any]:
    """Create the demo accounts, instances and people; write and return the manifest.

    Manifest (``state_dir/manifest.json``)::

        {"endpoint_url": ..., "region": "us-east-1",
         "accounts": [{"id", "name", "role_arn", "admin_role_arn", "regions"}],
         "instances": [{"id", "account", "region", "name", "platform", "local",
                        "managed", "domain_controller", "network_interfaces",
                        "ssh": {"host": "127.0.0.1", "port": ...}}],   # "ssh": local hosts only
         "principals": {"alice": {"111111111111": "arn:aws:iam::111111111111:user/alice", ...}},
         "federated_roles": {"customer": {"111111111111": "<role ARN>,<SAML provider ARN>", ...}, ...}}

    ``ssh`` says where each local host's own sshd listens, to reach it directly (the
    portal goes through StartSession instead). ``sshd_port(instance_id)`` starts it; by
    default the devcloud serving ``endpoint_url`` in this process is asked, and without
    one the manifest has no ``ssh``.
    """
    if sshd_port is None:
        sshd_port = _local_sshd_port(endpoint_url)
    base = boto3.Session(region_name=REGION, **CREDENTIALS)
    sts = base.client("sts", endpoint_url=endpoint_url)
    manifest: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region": REGION,
        "accounts": [],
        "instances": [],
        "principals": {},
        "federated_roles": {},
    }
    for plan in DEMO:
        session = _assume_admin_role(sts, plan)
        ec2 = session.client("ec2", endpoint_url=endpoint_url)
        iam = session.client("iam", endpoint_url=endpoint_url)
        _create_portal_role(iam)
        _create_handoff_key(session.client("kms", endpoint_url=endpoint_url))
        subnets = _create_network(ec2, plan.cidr_prefix)
        images = {"linux": _image(ec2, "amzn-ami-hvm-*", None), "windows": _image(ec2, "Windows_Server-*", "windows")}
        manifest["accounts"].append(
            {
                "id": plan.account_id,
                "name": plan.name,
                "role_arn": plan.role_arn,
                "admin_role_arn": plan.admin_role_arn,
                "regions": [REGION],
            }
        )
        for instance in plan.instances:
            instance_id = _launch(ec2, instance, images[instance.platform], subnets)
            manifest["instances"].append(
                {
                    "id": instance_id,
                    "account": plan.account_id,
                    "region": REGION,
                    "name": instance.name,
                    "platform": instance.platform,
                    "local": instance.local,
                    "managed": instance.tags.get("devcloud:managed") != "false",
                    "domain_controller": instance.tags.get("PassportDomainController") == "true",
                    "network_interfaces": instance.interfaces,
                }
            )
        for person in plan.people:
            arn = _create_person(iam, person)
            manifest["principals"].setdefault(person.name, {})[plan.account_id] = arn
        if plan.federated_roles:
            provider_arn = _create_saml_provider(iam)
            for role in plan.federated_roles:
                role_arn = _create_federated_role(iam, role, provider_arn)
                manifest["federated_roles"].setdefault(role.store, {})[plan.account_id] = f"{role_arn},{provider_arn}"
    if sshd_port is not None:
        _add_ssh_endpoints(manifest["instances"], sshd_port)
    _write_manifest(Path(state_dir) / "manifest.json", manifest)
    return manifest


def _local_sshd_port(endpoint_url: str) -> Callable[[str], int] | None:
    from devcloud.server import DevCloud  # the server imports what seeds nothing

    cloud = DevCloud.running()
    if cloud is None or cloud.endpoint_url.rstrip("/") != endpoint_url.rstrip("/"):
        return None
    return cloud.runtime.hosts.sshd_port


def _add_ssh_endpoints(instances: list[dict[str, Any]], sshd_port: Callable[[str], int]) -> None:
    """Start the local hosts' sshd (side by side: a host's first start copies /etc)."""
    local = [instance for instance in instances if instance["local"]]
    with ThreadPoolExecutor(max_workers=max(1, len(local))) as pool:
        ports = list(pool.map(lambda instance: sshd_port(instance["id"]), local))
    for instance, port in zip(local, ports, strict=True):
        instance["ssh"] = {"host": "127.0.0.1", "port": port}


def _assume_admin_role(sts: Any, plan: AccountPlan) -> boto3.Session:
    """Credentials in the plan's account, checked: moto maps them to the role's account."""
    credentials = sts.assume_role(RoleArn=plan.admin_role_arn, RoleSessionName="devcloud-seed")["Credentials"]
    session = boto3.Session(
        region_name=REGION,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    account = session.client("sts", endpoint_url=sts.meta.endpoint_url).get_caller_identity()["Account"]
    if account != plan.account_id:
        raise RuntimeError(f"assuming {plan.role_arn} gave credentials for {account}")
    return session


def _create_portal_role(iam: Any) -> None:
    trust = policy_document(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PORTAL_ACCOUNT}:root"}, "Action": "sts:AssumeRole"}
    )
    iam.create_role(RoleName=PORTAL_ROLE, AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName=PORTAL_ROLE, PolicyName="PassportPortalAccess", PolicyDocument=PORTAL_ROLE_POLICY)


def _create_handoff_key(kms: Any) -> None:
    """The account's own key for Windows passwords in Parameter Store (deploy/README.md, "Windows passwords")."""
    key_id = kms.create_key(Description="Passport: Windows passwords in hand-off")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=HANDOFF_KEY_ALIAS, TargetKeyId=key_id)


def _create_network(ec2: Any, cidr_prefix: str) -> list[str]:
    """One VPC with two subnets in one zone, so an instance can have an interface in each."""
    vpc_id = ec2.create_vpc(CidrBlock=f"{cidr_prefix}.0.0/16")["Vpc"]["VpcId"]
    return [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"{cidr_prefix}.{index}.0/24", AvailabilityZone=f"{REGION}a")[
            "Subnet"
        ]["SubnetId"]
        for index in (1, 2)
    ]


def _image(ec2: Any, name_pattern: str, platform: str | None) -> str:
    images = ec2.describe_images(Filters=[{"Name": "name", "Values": [name_pattern]}])["Images"]
    matching = sorted((i for i in images if i.get("Platform") == platform), key=lambda i: i["Name"])
    if not matching:
        raise RuntimeError(f"no {platform or 'linux'} image named {name_pattern}")
    return matching[0]["ImageId"]


def _launch(ec2: Any, plan: InstancePlan, image_id: str, subnets: list[str]) -> str:
    tags = {"Name": plan.name, **plan.tags}
    if plan.local:
        tags["devcloud:local"] = "true"
    interfaces = [{"DeviceIndex": index, "SubnetId": subnets[index]} for index in range(plan.interfaces)]
    reservation = ec2.run_instances(
        ImageId=image_id,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.medium" if plan.platform == "windows" else "t3.small",
        NetworkInterfaces=interfaces,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )
    return reservation["Instances"][0]["InstanceId"]


def _create_person(iam: Any, person: PersonPlan) -> str:
    arn = iam.create_user(UserName=person.name)["User"]["Arn"]
    for policy_arn in person.managed:
        iam.attach_user_policy(UserName=person.name, PolicyArn=policy_arn)
    for policy_name, document in person.inline:
        iam.put_user_policy(UserName=person.name, PolicyName=policy_name, PolicyDocument=document)
    return arn


def _create_saml_provider(iam: Any) -> str:
    # The metadata is a placeholder (devcloud never signs anyone into AWS itself), padded with
    # a comment to the 1000 characters the IAM API asks of a metadata document.
    body = (
        '<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="passport-demo-idp">'
        '<IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/>'
        "</EntityDescriptor>"
    )
    comment = "<!-- Passport demo identity provider: placeholder metadata for devcloud. -->"
    metadata = '<?xml version="1.0" encoding="UTF-8"?>' + comment.ljust(1000, " ") + body
    return iam.create_saml_provider(SAMLMetadataDocument=metadata, Name=SAML_PROVIDER)["SAMLProviderArn"]


def _create_federated_role(iam: Any, role: FederatedRolePlan, provider_arn: str) -> str:
    trust = policy_document(
        {
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithSAML",
            "Condition": {"StringEquals": {"SAML:aud": "https://signin.aws.amazon.com/saml"}},
        }
    )
    arn = iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    for policy_arn in role.managed:
        iam.attach_role_policy(RoleName=role.name, PolicyArn=policy_arn)
    for policy_name, document in role.inline:
        iam.put_role_policy(RoleName=role.name, PolicyName=policy_name, PolicyDocument=document)
    return arn


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, path)
