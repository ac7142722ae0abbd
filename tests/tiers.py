"""The two test tiers. CI (`make test`) runs the default tier, sized to stay well
under 20 minutes on 2 CPU cores; the nightly tier (`make test-all`, or
SCHEDC_NIGHTLY=1 in the environment) adds the long jobs: 4-rank kill/restart
runs, the long documented runs, the full sweep grid and larger property
budgets. Every behaviour a nightly test checks keeps at least one fast test in
the default tier.

Mark a test `@pytest.mark.nightly`; test modules that size themselves read
`NIGHTLY` (e.g. the sweep's grid, hypothesis budgets)."""

from __future__ import annotations

import os

NIGHTLY = os.environ.get("SCHEDC_NIGHTLY") == "1"
