"""Isaac Lab backend: pec's BALLU task on Isaac Lab 3.0 (kit-less Newton, or PhysX with Isaac Sim).

Importing this package is cheap and safe anywhere: Isaac Lab itself is imported only when
a job trains or evaluates (`pec.backends.isaaclab.task`), and a missing install is one
clear error naming `bash scripts/setup.sh isaaclab`.
"""

from pec.backends.isaaclab.backend import IsaacLabBackend
from pec.backends.isaaclab.settings import IsaacLabSettings, load_settings

__all__ = ["IsaacLabBackend", "IsaacLabSettings", "load_settings"]
