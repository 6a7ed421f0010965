"""What runbook shows and keeps: progress lines, plans and status tables, drift, and the
JSON report of every run."""
