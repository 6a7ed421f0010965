"""The sandbox's UpdateUserPool keeps what AWS keeps: the settings fixed at creation.

A user pool's UsernameAttributes, AliasAttributes and UsernameConfiguration are set by
CreateUserPool and cannot be changed: UpdateUserPool has no member for them, and AWS
keeps them whatever the update sends. moto 5.2.5 replaces the pool's whole configuration
with the update's, so after the first UpdateUserPool (attaching a trigger, say) its pool
forgets that users sign in with their e-mail address and that names compare without
case. Tests and the sandbox's Cognito stand-in would then run against a pool AWS could
never have. `install` teaches the moto running in this process to keep them.
"""

from __future__ import annotations

# CreateUserPool's members that UpdateUserPool lacks, kept as created (Schema is kept by
# moto already, apart from the configuration).
FIXED_AT_CREATION = ("UsernameAttributes", "AliasAttributes", "UsernameConfiguration")

SIMULATED = ("Cognito UpdateUserPool: moto replaces the pool's whole configuration; the "
             "sandbox keeps what AWS keeps, the settings fixed at creation "
             f"({', '.join(FIXED_AT_CREATION)}) (runbook.sandbox.cognito_pool)")


_installed: list = []    # the original method, once per install still in force


def install() -> None:
    """Make the in-process moto keep a pool's creation-only settings on UpdateUserPool,
    until as many `uninstall` calls: a sandbox's, for its life. Outside a sandbox (a
    test's mock_aws) moto is left as it is."""
    from moto.cognitoidp.models import CognitoIdpUserPool

    if _installed:
        _installed.append(_installed[0])
        return
    update = CognitoIdpUserPool.update_extended_config

    def update_extended_config(self, extended_config):
        before = getattr(self, "extended_config", None) or {}
        update(self, extended_config)
        for name in FIXED_AT_CREATION:
            if name in before:
                self.extended_config[name] = before[name]

    _installed.append(update)
    CognitoIdpUserPool.update_extended_config = update_extended_config


def uninstall() -> None:
    from moto.cognitoidp.models import CognitoIdpUserPool

    if not _installed:
        return
    original = _installed.pop()
    if not _installed:
        CognitoIdpUserPool.update_extended_config = original


def set_password_unchecked(pool_arn: str, username: str, password: str) -> None:
    """AdminSetUserPassword, permanent, without the pool's password policy, through the
    moto running in this process: Cognito does not apply the policy to the password a
    UserMigration trigger accepted (AWS-FACTS C), and moto's AdminSetUserPassword always
    does. Raises LookupError when this process's moto has no such pool."""
    from moto.cognitoidp.models import UserStatus, cognitoidp_backends

    _, _, _, region, account, resource = pool_arn.split(":", 5)
    pool_id = resource.split("/", 1)[1]
    backend = cognitoidp_backends[account][region]
    if pool_id not in backend.user_pools:
        raise LookupError(f"no user pool {pool_id} in this process's moto")
    user = backend.admin_get_user(pool_id, username)
    user.password = password
    user.status = UserStatus.CONFIRMED
