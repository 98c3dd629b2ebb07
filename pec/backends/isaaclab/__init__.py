"""Isaac Lab backend: trains and evaluates BALLU experts inside the GPU image.

Importing this package is cheap and safe anywhere: Isaac Lab / Isaac Sim are only ever
started as subprocesses by `IsaacLabBackend`.
"""

from pec.backends.isaaclab.backend import IsaacLabBackend
from pec.backends.isaaclab.settings import IsaacLabSettings, load_settings

__all__ = ["IsaacLabBackend", "IsaacLabSettings", "load_settings"]
