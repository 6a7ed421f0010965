"""Code shared by runbook and the Lambda handlers.

Modules here import nothing else from runbook, so that the Lambda packager can ship
this folder on its own. They need only the standard library, psycopg and (lazily)
boto3, which the Lambda runtime provides.
"""
