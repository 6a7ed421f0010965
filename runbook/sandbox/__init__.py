"""The `--dry-run` sandbox: a moto server and an embedded PostgreSQL behind a TLS
front-end, the local stand-ins for what moto lacks (Lambda code, Cognito triggers,
DescribeDBEngineVersions), and the crash-consistency sweep that runs against it."""
