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



COUNTED = """
import collections, json, sys
import botocore.loaders, botocore.session
loads = collections.Counter()
read = botocore.loaders.JSONFileLoader.load_file
def counted(self, path):
    loads[path.split("/data/", 1)[-1]] += 1
    return read(self, path)
botocore.loaders.JSONFileLoader.load_file = counted
from runbook.sandbox.stack import warm_up_moto
warm_up_moto()
from moto.core.base_backend import AccountSpecificBackend
regions = AccountSpecificBackend.get_session().get_available_regions("rds")
import boto3
after = boto3.Session()._session.get_component("data_loader")
print(json.dumps({"ec2": loads["ec2/2016-11-15/service-2"], "endpoints": loads["endpoints"],
                  "restored": botocore.session.create_loader is botocore.loaders.create_loader,
                  "own_loader": after is not AccountSpecificBackend.get_session()._session
                      .get_component("data_loader"),
                  "rds_regions": "eu-central-1" in regions}))
"""


def test_warm_up_reads_botocores_endpoints_and_ec2_model_once_for_all_of_motos_sessions():
    out = json.loads(subprocess.run([sys.executable, "-c", COUNTED], capture_output=True,
                                    text=True, check=True).stdout)
    # moto's import makes three sessions and its backends a fourth: one read each file.
    assert out == {"ec2": 1, "endpoints": 1, "restored": True, "own_loader": True,
                   "rds_regions": True}
