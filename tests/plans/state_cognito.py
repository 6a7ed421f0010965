"""Step cognito's plan cases, in the form AWS describes them:
  "account"     the account id
  "pools"       the pool's candidates (UserPool.candidates): DescribeUserPool's "UserPool"
                of the one found, or ListUserPools' entries when several share the name
  "client"      DescribeUserPoolClient's "UserPoolClient", or null
  "pre_signup"  what read_function found of the Pre-SignUp function, in the fields of
                runbook.functions.deploy.FunctionState: "role", "log_group", "function",
                "statement" (null or absent: not there), and "artifact_sha256", the
                CodeSha256 of the local build
"""

from __future__ import annotations

from runbook.engine import UNKNOWN
from runbook.functions.deploy import FunctionState
from runbook.functions.package import Artifact
from runbook.resources.user_pool import AppClientFound, UserPoolFound


def state(step, data: dict):
    pools = [UserPoolFound.parse(p) for p in data.get("pools", [])]
    client = AppClientFound.parse(data["client"]) if data.get("client") else None
    fn, account = data["pre_signup"], data["account"]
    pool_arn = pools[0].arn if len(pools) == 1 else UNKNOWN
    function = FunctionState(step.pre_signup_spec(pool_arn, account), account,
                             step.ctx.aws.region, Artifact(b"", fn["artifact_sha256"], ()),
                             role=fn.get("role"), log_group=fn.get("log_group"),
                             function=fn.get("function"), statement=fn.get("statement"))
    return step.state(pools, client, function)
