"""Inventory: EC2's instances of a region, with what Systems Manager knows of each.

EC2 says what an instance is (its platform, from the image it was launched from); Systems Manager
adds what its agent reports (reachability, agent version, the OS's name), which the instance itself
may make say anything, so it never decides the platform.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from fleet.aws.clients import AwsClients
from fleet.aws.paging import MAX_ACCOUNT_PAGES, capped_pages
from fleet.interface import FleetError, InstanceRecord


class InventoryMixin(AwsClients):
    def describe(self, region: str) -> list[InstanceRecord]:
        try:
            records = self._ec2_instances(region)
            self._merge_ssm_information(region, records)
        except (ClientError, BotoCoreError) as exc:
            raise FleetError(f"Inventory of {self.account.account_id}/{region} failed: {exc}") from exc
        except ResponseParserError as exc:
            # A tag holding a character XML cannot carry (ESC, say) makes the whole answer unreadable: the
            # region fails and keeps its rows, and the message leaves out the answer, tag and all.
            raise FleetError(f"Inventory of {self.account.account_id}/{region} failed: unreadable answer") from exc
        return list(records.values())

    def _ec2_instances(self, region: str) -> dict[str, InstanceRecord]:
        records: dict[str, InstanceRecord] = {}
        paginator = self._client("ec2", region).get_paginator("describe_instances")
        for page in capped_pages(
            paginator.paginate(), what=f"DescribeInstances in {region}", max_pages=MAX_ACCOUNT_PAGES
        ):
            for reservation in page.get("Reservations", []):
                for item in reservation.get("Instances", []):
                    state = item.get("State", {}).get("Name", "")
                    if state == "terminated":
                        continue
                    tags = {tag["Key"]: tag["Value"] for tag in item.get("Tags", [])}
                    records[item["InstanceId"]] = InstanceRecord(
                        instance_id=item["InstanceId"],
                        region=region,
                        name=tags.get("Name", ""),
                        state=state,
                        platform="windows" if item.get("Platform", "").lower() == "windows" else "linux",
                        private_ip=item.get("PrivateIpAddress", ""),
                        network_interfaces=[
                            {
                                "id": eni.get("NetworkInterfaceId", ""),
                                "private_ip": eni.get("PrivateIpAddress", ""),
                                "subnet_id": eni.get("SubnetId", ""),
                                "device_index": eni.get("Attachment", {}).get("DeviceIndex", 0),
                            }
                            for eni in item.get("NetworkInterfaces", [])
                        ],
                        tags=tags,
                    )
        return records

    def _merge_ssm_information(self, region: str, records: dict[str, InstanceRecord]) -> None:
        paginator = self._client("ssm", region).get_paginator("describe_instance_information")
        pages = paginator.paginate()
        for page in capped_pages(pages, what=f"DescribeInstanceInformation in {region}", max_pages=MAX_ACCOUNT_PAGES):
            for info in page.get("InstanceInformationList", []):
                record = records.get(info["InstanceId"])
                if record is None:  # a hybrid node or an instance of another region: not ours to list
                    continue
                record.ssm_managed = True
                record.ping_status = info.get("PingStatus", "")
                record.agent_version = info.get("AgentVersion", "")
                record.platform_name = " ".join(
                    part for part in (info.get("PlatformName", ""), info.get("PlatformVersion", "")) if part
                )
                # The platform stays EC2's (``Platform``, fixed at launch from the image). SSM's
                # ``PlatformType`` is what the instance's own agent reports (UpdateInstanceInformation,
                # with the instance's credentials): whoever controls the instance may make it say
                # Windows, and have a Linux request approved with sudo made a Windows Administrator.
                # What the agent says is kept as text only (``platform_name``).
                record.last_ping_at = info.get("LastPingDateTime")
