"""tierline's engine: planning, the Ray driver and workers, routing, providers, quotas,
budgets, costs, tokens, forecasting, the provider simulator and the CLI."""

import os

if "RAY_ADDRESS" not in os.environ:
    # A Ray cluster this process starts itself serves this machine only: bind it to the
    # loopback address instead of the first network interface. (Ray reads this flag when
    # it is imported; it has no effect on joining an existing cluster.)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
