"""The run's read cache: what a run has described once, it does not describe again.

A run reads the same resources several times: the preflight plans every step before the
first write (runbook.preflight), each step reads what it plans, and a later step reads
what an earlier one made (store-secrets the cluster's password tag). Like pyinfra's facts,
an answer is kept for the run and given again to the same request, until something may
have changed it. The rules, each for a reason:

- Only reads made inside `ClientFactory.reading()` are answered or kept: a step's `read`,
  the preflight's facts. Everything else is sent, so a loop that polls without the named
  helpers (a test step waiting for a row or a log line) never spins on an old answer.
- A retry's or a wait's reads are always sent, and not kept (runbook.aws.retry.polling):
  they ask again because the last answer may be out of date.
- Every write forgets, before it is sent, the answers of its own service and of the
  services where AWS makes or changes resources on another service's behalf (SHARED:
  network interfaces and the groups they use, service-linked roles, grants, log groups,
  secrets a service manages): a write whose answer is lost may have taken effect, so
  nothing it may have changed is given again. An answer that overlapped a write (sent
  before the write ended, from another thread) is not kept.
- What is kept is what AWS said: an answer, or "not found" (absence is an answer). Other
  errors (throttling, access denied) are not kept, and a streamed answer never is. Only
  operations that read by their name are kept: an Invoke of db_migrate's read action
  counts as a read, but asks a database that changes with no AWS write.

Nothing in the cache outlives its ClientFactory, one per run. A live run takes the
environment's lock before the first read the cache keeps, the preflight's (runbook.app),
so no other runbook run writes to the environment while the answers are given again; a
dry run's sandbox is its own. A change someone makes by hand during a run is seen by the
next run, as it is by a run whose step read just before the change.
"""

from __future__ import annotations

import copy
import threading

from runbook.aws.api import is_not_found_code

# The services whose resources AWS makes or changes when another service is written to:
# EC2 (an instance's, a function's, a cluster's network interfaces), IAM (service-linked
# roles), KMS (grants), CloudWatch Logs (the log groups a service writes to) and Secrets
# Manager (the secrets RDS and others manage). Every write forgets their answers too.
SHARED = frozenset({"ec2", "iam", "kms", "logs", "secretsmanager"})


class ReadCache:
    """Answers by request, forgotten on a write that may change them. Thread-safe: the
    cache is the run's, and steps may read and write from several threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._answers: dict[tuple, tuple] = {}
        # Bumped by each write's start and end: a read is kept only if no write began
        # or ended while it was under way, and none is under way when it is kept.
        self._generation = 0
        self._writing = 0
        self.hits = 0

    @staticmethod
    def key(service: str, operation: str, request: dict) -> tuple:
        """The request as botocore serialised it (before-call's `params`): its path,
        query, body and the headers that carry parameters. The User-Agent, which names
        the paginator or waiter that sent it, is left out."""
        body = request.get("body")
        if isinstance(body, dict):
            body = tuple(sorted((k, repr(v)) for k, v in body.items()))
        headers = tuple(sorted((str(k).lower(), str(v))
                               for k, v in (request.get("headers") or {}).items()
                               if str(k).lower() != "user-agent"))
        return (service, operation, request.get("url_path"),
                repr(request.get("query_string")), repr(body), headers)

    def answer(self, key: tuple):
        """The (http response, parsed answer) kept for `key`, a copy; or None."""
        with self._lock:
            kept = self._answers.get(key)
            if kept is None:
                return None
            self.hits += 1
        http, parsed = kept
        return http, copy.deepcopy(parsed)

    def generation(self) -> int:
        with self._lock:
            return self._generation

    def keep(self, key: tuple, generation: int, http, parsed: dict) -> None:
        """Keep an answer of a read that began at `generation`, if it is one to keep and
        no write overlapped it."""
        status = getattr(http, "status_code", 500)
        if status >= 300 and not is_not_found_code(
                (parsed or {}).get("Error", {}).get("Code") or ""):
            return
        copied = copy.deepcopy(parsed)
        with self._lock:
            if generation == self._generation and not self._writing:
                self._answers[key] = (http, copied)

    def write_started(self, service: str) -> None:
        """Before a write to `service` is sent: forget every answer it may change."""
        changed = SHARED | {service}
        with self._lock:
            self._generation += 1
            self._writing += 1
            for key in [key for key in self._answers if key[0] in changed]:
                del self._answers[key]

    def write_ended(self) -> None:
        """The write got its answer, failed, or was not sent after all."""
        with self._lock:
            self._generation += 1
            self._writing = max(0, self._writing - 1)

    def __len__(self) -> int:
        with self._lock:
            return len(self._answers)
