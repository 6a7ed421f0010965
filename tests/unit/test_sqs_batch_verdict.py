"""How the sandbox's poller reads a function's answer to an SQS batch, as Lambda reads it
with and without ReportBatchItemFailures (runbook.sandbox.sqs.verdict; AWS-FACTS A)."""

from __future__ import annotations

import pytest

from runbook.functions.invoke import Invocation
from runbook.sandbox.sqs import verdict

IDS = ["m1", "m2"]
ALL = {"m1", "m2"}


def answered(result) -> Invocation:
    return Invocation("fn", "r", result=result)


CASES = [
    # (answer, report_failures, failed ids, reason)
    (None, True, set(), None),
    ("", True, set(), None),
    ({}, True, set(), None),
    ({"batchItemFailures": None}, True, set(), None),
    ({"batchItemFailures": []}, True, set(), None),
    ({"BatchItemFailures": [{"itemIdentifier": "m1"}]}, True, set(), None),  # misspelled: lost
    ({"batchItemFailures": [{"itemIdentifier": "m1"}]}, True, {"m1"}, "batch item failures"),
    ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}, True, ALL,
     "batch item failures"),
    ({"batchItemFailures": [{"itemIdentifier": "m3"}]}, True, ALL, "invalid response"),
    ({"batchItemFailures": [{"itemIdentifier": ""}]}, True, ALL, "invalid response"),
    ({"batchItemFailures": [{"itemIdentifier": None}]}, True, ALL, "invalid response"),
    ({"batchItemFailures": [{"itemId": "m1"}]}, True, ALL, "invalid response"),
    ({"batchItemFailures": ["m1"]}, True, ALL, "invalid response"),
    ({"batchItemFailures": {"itemIdentifier": "m1"}}, True, ALL, "invalid response"),
    ("ok", True, ALL, "invalid response"),
    ([], True, ALL, "invalid response"),
    ({"batchItemFailures": [{"itemIdentifier": "m1"}]}, False, set(), None),
    ("ok", False, set(), None),
]


@pytest.mark.parametrize("answer, report, failed, reason", CASES)
def test_the_answer_is_read_as_lambda_reads_it(answer, report, failed, reason):
    assert verdict(answered(answer), IDS, report_failures=report) == (failed, reason)


@pytest.mark.parametrize("report", [True, False])
def test_a_function_error_fails_the_whole_batch(report):
    failed = Invocation("fn", "r", result={"batchItemFailures": []}, error_type="KeyError")
    assert verdict(failed, IDS, report_failures=report) == (ALL, "function error")
