"""The Lambda functions runbook deploys: the registry (one entry each), their specs and
deployment, deterministic packages and layer, and invoking them (live, or locally in
the sandbox)."""
