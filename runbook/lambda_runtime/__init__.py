"""The library every Lambda zip carries (runbook/lambda_runtime/ in the zip), run by the
handlers and by runbook alike: the database connector, the profile upsert, and
fix-tables' database side (ledger, roles, survey).

Modules here import nothing else from runbook, so that the packager can ship this
folder on its own: only the standard library, psycopg and passlib (in the layer) and,
lazily, boto3, which the Lambda runtime provides (tests/unit/test_layers.py holds them
to it).
"""
