"""Network interfaces that keep a subnet or a security group from being deleted. runbook
makes none; teardown has to wait for some and delete others.

Lambda gives a function in a VPC network interfaces of its own (described "AWS Lambda
VPC ENI-<function>-<uuid>", InterfaceType "lambda" on AWS), and releases them, with the
function's execution role, 20 to 45 minutes after the function is deleted, at times
more than an hour. Until then AWS refuses to delete the subnets and the security groups
they use (DependencyViolation; moto 5.2.5 deletes them). One that Lambda could not
release (its role deleted first) is left `available`, and stays until someone deletes
it. So teardown deletes the functions, keeps their roles, polls `lambda_interfaces`
until each interface is gone or available, deletes the available ones
(`NetworkInterface.delete`), and names what `blocking` still finds when a subnet or a
group cannot be deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runbook.aws import naming
from runbook.aws.api import Api, or_none, pages
from runbook.errors import StepFailed
from runbook.resources.base import DeleteOptions, Found, Resource, Spec

# How Lambda describes the interfaces it makes for a function in a VPC.
LAMBDA_DESCRIPTION = "AWS Lambda VPC ENI"
LAMBDA_TYPE = "lambda"
# An interface's status: only an available one (attached to nothing) can be deleted.
AVAILABLE, IN_USE = "available", "in-use"


@dataclass
class InterfaceFound(Found):
    status: str = ""                    # "in-use", "available" (or attaching, detaching)
    description: str = ""
    group_ids: list = field(default_factory=list)
    subnet_id: str = ""
    attachment_id: str | None = None    # its attachment, while it is attached
    interface_type: str = ""            # "lambda" for Lambda's on AWS ("interface" in moto)

    @property
    def by_lambda(self) -> bool:
        """Whether Lambda made it for a function in a VPC."""
        return (self.description.startswith(LAMBDA_DESCRIPTION)
                or self.interface_type == LAMBDA_TYPE)


def blocking(api: Api, group_ids=(), subnet_ids=()) -> list[InterfaceFound]:
    """Read only: every interface, whoever made it, that sits in one of `subnet_ids` or
    uses one of `group_ids`, by id: what keeps those from being deleted."""
    found: dict[str, InterfaceFound] = {}
    for name, values in (("group-id", group_ids), ("subnet-id", subnet_ids)):
        if values:
            # One read per filter: Describe* filters of different names must all match.
            for raw in pages(api.client("ec2"), "describe_network_interfaces",
                             "NetworkInterfaces",
                             Filters=[{"Name": name, "Values": sorted(set(values))}]):
                found[raw["NetworkInterfaceId"]] = _interface(raw)
    return [found[key] for key in sorted(found)]


def lambda_interfaces(api: Api, group_ids=(), subnet_ids=()) -> list[InterfaceFound]:
    """Read only: Lambda's interfaces among those `blocking` finds."""
    return [interface for interface in blocking(api, group_ids, subnet_ids)
            if interface.by_lambda]


class NetworkInterface(Resource[Spec, InterfaceFound]):
    """Deleted only when left available. Not found by tags (`owned` is []): Lambda tags
    none of them; teardown finds them with `lambda_interfaces`."""

    kind, service, plural = "ec2:network-interface", "ec2", "network interfaces"

    def delete(self, api: Api, found: InterfaceFound,
               options: DeleteOptions = DeleteOptions()) -> None:
        """DeleteNetworkInterface, for an interface attached to nothing. One in use is
        refused here rather than by AWS: Lambda's are released by Lambda, not detached
        by hand (AWS refuses to detach an interface another service manages)."""
        current = _read(api, found.id)
        if current is None:
            return
        if current.status != AVAILABLE:
            raise StepFailed("destroy", self.title(found),
                             f"it is {current.status}, not available; only an interface "
                             "attached to nothing can be deleted. Lambda releases a "
                             "deleted function's interfaces within about 45 minutes, "
                             "with the function's execution role: run the destroy again "
                             "later.")
        or_none(lambda: api.client("ec2").delete_network_interface(
            NetworkInterfaceId=found.id))

    def gone(self, api: Api, found: InterfaceFound) -> bool:
        return _read(api, found.id) is None

    def title(self, found: InterfaceFound) -> str:
        """"ec2:network-interface eni-12ab (AWS Lambda VPC ENI-<function>-<uuid>)"."""
        if found.description:
            return f"{self.kind} {found.id} ({found.description})"
        return f"{self.kind} {found.id}"


def _read(api: Api, interface_id: str) -> InterfaceFound | None:
    """The interface as it is now, or None when it is gone."""
    interfaces = or_none(lambda: api.client("ec2").describe_network_interfaces(
        NetworkInterfaceIds=[interface_id])["NetworkInterfaces"])
    return _interface(interfaces[0]) if interfaces else None


def _interface(raw: dict) -> InterfaceFound:
    """One DescribeNetworkInterfaces item (its tags are TagSet there)."""
    attachment = raw.get("Attachment") or {}
    return InterfaceFound(
        raw["NetworkInterfaceId"], naming.from_aws(raw.get("TagSet")),
        str(raw.get("Status", "")), str(raw.get("Description", "")),
        [g["GroupId"] for g in raw.get("Groups", ())], str(raw.get("SubnetId", "")),
        attachment.get("AttachmentId"), str(raw.get("InterfaceType", "")))
