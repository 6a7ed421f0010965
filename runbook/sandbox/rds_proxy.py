"""The sandbox's fix for moto 5.2.5's CreateDBProxy in end-to-end IAM mode.

runbook creates its proxy as AWS documents end-to-end IAM: `DefaultAuthScheme=IAM_AUTH`
and no `Auth` (no per-user secret; botocore's model: "If you don't specify
DefaultAuthScheme or specify this parameter as NONE, you must specify the Auth option").
moto 5.2.5 answers that request with HTTP 500 (KeyError 'auth'), and it neither keeps nor
returns DefaultAuthScheme, so every later plan would see a proxy to move to IAM_AUTH, and
ModifyDBProxy is not implemented there.

`install` teaches the moto running in this process (the sandbox's server, or a test's) to
take a CreateDBProxy without Auth (as an empty list) and to keep DefaultAuthScheme, which
DescribeDBProxies then returns as AWS does. Nothing else of moto's proxy changes: it is
`available` at once, and a second RegisterDBProxyTargets still duplicates the target.
A live run sends the same request to AWS.
"""

from __future__ import annotations

SIMULATED = ("RDS Proxy: moto keeps the proxy's record, available at once, and its "
             "targets AVAILABLE at once; no proxy runs behind its endpoint. moto 5.2.5 "
             "fails a CreateDBProxy without Auth and drops DefaultAuthScheme, so the "
             "sandbox takes end-to-end IAM's request (DefaultAuthScheme=IAM_AUTH, no Auth) "
             "and keeps the scheme (runbook.sandbox.rds_proxy)")


def install() -> bool:
    """Patch the in-process moto's CreateDBProxy; False if it was patched already."""
    from moto.rds.responses import RDSResponse

    original = RDSResponse.create_db_proxy
    if getattr(original, "runbook_sandbox", False):
        return False

    def create_db_proxy(self):
        self.params.setdefault("Auth", [])
        result = original(self)
        scheme = self.params.get("DefaultAuthScheme")
        if scheme:
            proxy = self.backend.db_proxies[self.params["DBProxyName"]]
            proxy.default_auth_scheme = scheme
        return result

    create_db_proxy.runbook_sandbox = True
    RDSResponse.create_db_proxy = create_db_proxy
    return True
