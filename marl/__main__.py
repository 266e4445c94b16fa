"""``python -m marl ...`` is ``marl ...`` (what ``torchrun -m marl train ...`` runs)."""

import sys

from marl.cli import main

sys.exit(main())
