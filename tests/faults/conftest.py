"""The fault tests' shared fixtures: the simulator in this process (`sim`)."""

from tests.faults.test_fault_matrix import sim

__all__ = ["sim"]
