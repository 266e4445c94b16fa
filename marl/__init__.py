"""marl: offline multi-task multi-agent RL with transferable team skills."""

from pathlib import Path

# behaviour policies shipped with the repository (datasets/policies/<task>/)
SHIPPED_POLICIES = Path(__file__).resolve().parents[1] / "datasets" / "policies"
