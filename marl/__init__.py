"""marl: offline multi-task multi-agent RL with transferable team skills."""

from pathlib import Path

# behaviour policies shipped as package data (marl/policies/<task>/)
SHIPPED_POLICIES = Path(__file__).resolve().parent / "policies"
