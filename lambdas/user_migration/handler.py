"""Placeholder for the Cognito UserMigration trigger, so that step deploy-user-migration
can package and deploy the function; the handler itself is written separately."""


def handler(event, context):
    raise NotImplementedError("the UserMigration handler is not written yet")
