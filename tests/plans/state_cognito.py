"""Step cognito's plan cases, in the form AWS describes them:
  "account"     the account id
  "pools"       the pool's candidates (UserPool.candidates): DescribeUserPool's "UserPool"
                of the one found, or ListUserPools' entries when several share the name
  "client"      DescribeUserPoolClient's "UserPoolClient", or null
  "pre_signup"  what read_function found of the Pre-SignUp function: "role",
                "log_group", "function", "statement" (null or absent: not there), and
                "artifact_sha256", the CodeSha256 of the local build
                (tests/plans/functions.py)
"""

from __future__ import annotations

from runbook.engine import UNKNOWN
from runbook.resources.user_pool import AppClientFound, UserPoolFound
from tests.plans import functions


def state(step, data: dict):
    pools = [UserPoolFound.parse(p) for p in data.get("pools", [])]
    # As Resource.candidates reads them: what cognito.pool_id names, else by name.
    candidates = ({"by_id": pools[0]} if step.config.cognito.pool_id
                  else {"tagged": [], "named": pools})
    client = AppClientFound.parse(data["client"]) if data.get("client") else None
    fn, account = data["pre_signup"], data["account"]
    pool_arn = pools[0].arn if len(pools) == 1 else UNKNOWN
    function = functions.function_state(step.pre_signup_spec(pool_arn, account), account,
                                        step.ctx.aws.region, fn)
    return step.state(candidates, client, function)
