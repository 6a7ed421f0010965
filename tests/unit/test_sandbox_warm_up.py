"""The sandbox imports moto's backends before its server takes requests
(runbook.sandbox.stack.warm_up_moto): two first requests at once used to race in the
import system (moto's IAM access check imports moto.s3), and one got an HTML 500."""

from __future__ import annotations

import json
import subprocess
import sys

from runbook.sandbox import stack

CODE = """
import json, sys
from runbook.sandbox.stack import MOTO_SERVICES, warm_up_moto
before = sorted(m for m in ("moto.s3.models", "moto.iam.access_control", "moto.sqs.models")
                if m in sys.modules)
warm_up_moto()
from moto.backends import get_backend
print(json.dumps({"before": before,
                  "after": [m for m in ("moto.s3.models", "moto.iam.access_control")
                            if m in sys.modules],
                  "backends": [s for s in MOTO_SERVICES if get_backend(s) is not None]}))
"""


def test_warm_up_imports_the_access_check_and_every_backend_the_sandbox_serves():
    out = json.loads(subprocess.run([sys.executable, "-c", CODE], capture_output=True,
                                    text=True, check=True).stdout)
    assert out["before"] == []        # a fresh interpreter: nothing imported yet
    assert out["after"] == ["moto.s3.models", "moto.iam.access_control"]
    assert out["backends"] == list(stack.MOTO_SERVICES)

