"""The AWS seam: the one client factory (counting, journal, fault injection), the Api
resources read and write through, and what runbook knows of AWS's own formats (tags,
IAM policies, security-group rules, user-pool requests, retries and waiters)."""
