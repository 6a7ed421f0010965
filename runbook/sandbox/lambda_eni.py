"""Lambda's VPC network interfaces, and what they block, for the sandbox.

On AWS a function in a VPC reaches it through a Hyperplane interface that Lambda makes
in each of its subnets, one per subnet and set of security groups and shared by every
function with the same pair. When the last such function goes, Lambda releases the
interface with the function's execution role, minutes or more than an hour later, and
one it could not delete is left `available`. Until then AWS refuses to delete the
interface's security group or subnet (DependencyViolation), and it refuses to delete an
interface that is still in use (AWS-FACTS D).

moto 5.2.5 makes no interface for a function, deletes a group or a subnet whatever
uses it, and deletes an interface in use. So a destroy that deleted the roles first, or
the groups before the interfaces were gone, would pass in a dry run and fail on AWS.
`install` makes the in-process moto strict, and plays Lambda's part:

- a function made or changed with a VpcConfig gets the shared interface of each of its
  subnets ("AWS Lambda VPC ENI-<function>-<id>", type lambda, in use);
- when no function uses one any more, it is released RELEASE_S later, and left
  `available`, as Lambda leaves one it could not delete: runbook must delete it;
- DeleteSecurityGroup is refused while an interface uses the group or another group's
  rule names it; DeleteSubnet while an interface is in the subnet; and
  DeleteNetworkInterface while the interface is in use.
"""

from __future__ import annotations

import threading
import uuid

# How long after its last function is deleted the sandbox's Lambda releases an interface.
RELEASE_S = 1.0
DESCRIPTION = "AWS Lambda VPC ENI-"

SIMULATED = ("Lambda VPC network interfaces (runbook.sandbox.lambda_eni): moto makes none; "
             "the sandbox gives each subnet and security-group set of the VPC functions "
             "one shared interface in use, releases it "
             f"{RELEASE_S:g} s after its last function is deleted (AWS: minutes to over an "
             "hour) and leaves it available for runbook to delete; as on AWS, a security "
             "group or subnet an interface uses, a group another group's rule names, and "
             "an interface in use cannot be deleted (DependencyViolation)")

_lock = threading.RLock()
_installed: list = []           # the originals, while installed (refcounted by sandboxes)


class _Shared:
    """The interfaces the sandbox's Lambda made: (account, region, subnet, groups) ->
    interface id."""

    interfaces: dict[tuple, str] = {}


def install() -> None:
    from moto.awslambda.models import LambdaBackend
    from moto.ec2.models.elastic_network_interfaces import NetworkInterfaceBackend
    from moto.ec2.models.security_groups import SecurityGroupBackend
    from moto.ec2.models.subnets import SubnetBackend

    with _lock:
        if _installed:
            _installed.append(None)
            return
        originals = {
            (LambdaBackend, "create_function"): LambdaBackend.create_function,
            (LambdaBackend, "update_function_configuration"):
                LambdaBackend.update_function_configuration,
            (LambdaBackend, "delete_function"): LambdaBackend.delete_function,
            (SecurityGroupBackend, "delete_security_group"):
                SecurityGroupBackend.delete_security_group,
            (SubnetBackend, "delete_subnet"): SubnetBackend.delete_subnet,
            (NetworkInterfaceBackend, "delete_network_interface"):
                NetworkInterfaceBackend.delete_network_interface,
        }
        _installed.append(originals)

        def create_function(self, spec):
            function = originals[(LambdaBackend, "create_function")](self, spec)
            _sync(self)
            return function

        def update_function_configuration(self, *args, **kwargs):
            answer = originals[(LambdaBackend, "update_function_configuration")](
                self, *args, **kwargs)
            _sync(self)
            return answer

        def delete_function(self, *args, **kwargs):
            answer = originals[(LambdaBackend, "delete_function")](self, *args, **kwargs)
            _sync(self)
            return answer

        def delete_security_group(self, name=None, group_id=None):
            if group_id:
                _refuse_group(self, group_id)
            return originals[(SecurityGroupBackend, "delete_security_group")](
                self, name=name, group_id=group_id)

        def delete_subnet(self, subnet_id):
            users = [e.id for e in self.enis.values()
                     if getattr(e.subnet, "id", None) == subnet_id]
            if users:
                _violation(f"The subnet '{subnet_id}' has dependencies and cannot be "
                           f"deleted ({', '.join(users)}).")
            return originals[(SubnetBackend, "delete_subnet")](self, subnet_id)

        def delete_network_interface(self, eni_id):
            eni = self.enis.get(eni_id)
            if eni is not None and eni.status == "in-use":
                from moto.ec2.exceptions import EC2ClientError

                raise EC2ClientError("InvalidParameterValue",
                                     f"Network interface '{eni_id}' is currently in use.")
            return originals[(NetworkInterfaceBackend, "delete_network_interface")](
                self, eni_id)

        for owner, method in ((LambdaBackend, create_function),
                              (LambdaBackend, update_function_configuration),
                              (LambdaBackend, delete_function),
                              (SecurityGroupBackend, delete_security_group),
                              (SubnetBackend, delete_subnet),
                              (NetworkInterfaceBackend, delete_network_interface)):
            setattr(owner, method.__name__, method)


def uninstall() -> None:
    with _lock:
        if not _installed:
            return
        originals = _installed.pop()
        if originals is None:
            return
        for (owner, name), method in originals.items():
            setattr(owner, name, method)
        _Shared.interfaces.clear()


def _violation(message: str) -> None:
    from moto.ec2.exceptions import DependencyViolationError

    raise DependencyViolationError(message)


def _refuse_group(backend, group_id: str) -> None:
    users = [e.id for e in backend.enis.values() if group_id in _group_ids(e)]
    if users:
        _violation(f"resource {group_id} has a dependent object ({', '.join(users)})")
    for groups in backend.groups.values():
        for group in groups.values():
            if group.id == group_id:
                continue
            for rule in list(group.ingress_rules) + list(group.egress_rules):
                source = rule.source_group or {}
                if group_id in (source.get("GroupId"), source.get("GroupName")):
                    _violation(f"resource {group_id} has a dependent object (a rule of "
                               f"{group.id})")


def _group_ids(eni) -> set[str]:
    return {getattr(g, "id", g) for g in eni._group_set}


def _sync(backend) -> None:
    """Make the interfaces the backend's VPC functions need; release, RELEASE_S later,
    those no function needs any more."""
    from moto.ec2.models import ec2_backends

    account, region = backend.account_id, backend.region_name
    ec2 = ec2_backends[account][region]
    wanted: dict[tuple, str] = {}
    for function in list(backend._lambdas.all()):
        vpc = function.vpc_config or {}
        groups = tuple(sorted(vpc.get("SecurityGroupIds") or ()))
        for subnet in vpc.get("SubnetIds") or ():
            wanted.setdefault((account, region, subnet, groups), function.function_name)
    with _lock:
        for key, name in wanted.items():
            if key not in _Shared.interfaces:
                _, _, subnet, groups = key
                eni = ec2.create_network_interface(
                    subnet, None, group_ids=list(groups),
                    description=f"{DESCRIPTION}{name}-{uuid.uuid4()}")
                eni.status, eni.interface_type = "in-use", "lambda"
                eni.requester_managed = True
                _Shared.interfaces[key] = eni.id
        for key in [k for k in _Shared.interfaces if k[:2] == (account, region)
                    and k not in wanted]:
            eni_id = _Shared.interfaces.pop(key)
            timer = threading.Timer(RELEASE_S, _release, (ec2, eni_id))
            timer.daemon = True
            timer.start()


def _release(ec2, eni_id: str) -> None:
    eni = ec2.enis.get(eni_id)
    if eni is not None:
        eni.status = "available"
