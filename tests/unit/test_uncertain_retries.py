"""When botocore may retry a create that AWS would carry out twice: only when the first
request certainly was not carried out (runbook.aws.not_retried_when_uncertain)."""

from __future__ import annotations

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (ConnectionClosedError, ConnectTimeoutError,
                                 EndpointConnectionError, ReadTimeoutError)

from runbook.aws.clients import not_retried_when_uncertain

URL = "https://ec2.eu-central-1.amazonaws.com/"


def answer(status: int, code: str | None = None):
    parsed = {"Error": {"Code": code, "Message": ""}} if code else {}
    return AWSResponse(URL, status, {}, None), parsed


@pytest.mark.parametrize("failure, verdict", [
    # Sent, answer lost: AWS may have made the resource. botocore must not send it again.
    ({"caught_exception": ConnectionClosedError(endpoint_url=URL)}, False),
    ({"caught_exception": ReadTimeoutError(endpoint_url=URL)}, False),
    ({"response": answer(500, "InternalError")}, False),
    ({"response": answer(503, "ServiceUnavailable")}, False),
    # Never carried out: botocore's own handler decides (it retries these).
    ({"caught_exception": EndpointConnectionError(endpoint_url=URL)}, None),
    ({"caught_exception": ConnectTimeoutError(endpoint_url=URL)}, None),
    ({"response": answer(503, "RequestLimitExceeded")}, None),   # EC2's throttling
    ({"response": answer(400, "ThrottlingException")}, None),
    ({"response": answer(200)}, None),
], ids=["closed", "read-timeout", "500", "503", "no-connection", "connect-timeout",
        "ec2-throttled", "throttled", "ok"])
def test_a_create_is_retried_only_when_it_certainly_was_not_carried_out(failure, verdict):
    assert not_retried_when_uncertain(attempts=1, **failure) is verdict
