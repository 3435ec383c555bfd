"""partner-reconciler: declarative reconciliation of Partner Center customer relationships."""

__version__ = "0.1.0"
