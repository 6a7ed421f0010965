"""runbook's own side of the database: logging in to the cluster (password or IAM
token, TLS verified against the RDS CA bundle) and rendering the versioned migrations."""
