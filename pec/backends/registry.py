"""Backend lookup by name, importing each simulator only when a job asks for it.

Isaac Lab is an optional extra (`bash scripts/setup.sh isaaclab`, or the GPU image), so
nothing here may import it eagerly.

Test doubles: a name starting with ``test-`` is resolved only when the environment
variable ``PEC_TEST_BACKEND_MODULE`` names a module (e.g. ``job_doubles``); that module's
``make_test_backend(name)`` builds the backend. Without the variable such names are
rejected, so a spec alone can never make a worker import arbitrary code.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import cast

from pec.backends.base import Backend
from pec.errors import ConfigError
from pec.maths.design_space import AXES

BACKEND_NAMES = ("mujoco", "isaaclab")
# The design axes each backend simulates (of pec.maths.design_space.AXES), known without
# importing a simulator; each backend class states the same as `design_axes`.
BACKEND_DESIGN_AXES: dict[str, tuple[str, ...]] = {
    "mujoco": AXES,
    "isaaclab": AXES,
}
TEST_BACKEND_PREFIX = "test-"
TEST_BACKEND_MODULE_ENV = "PEC_TEST_BACKEND_MODULE"


def get_backend(name: str) -> Backend:
    """Instantiate the backend called `name`."""
    if name == "mujoco":
        from pec.backends.mujoco import MujocoBackend

        return cast(Backend, MujocoBackend())
    if name == "isaaclab":
        from pec.backends.isaaclab import IsaacLabBackend

        return cast(Backend, IsaacLabBackend())
    if name.startswith(TEST_BACKEND_PREFIX):
        module_name = os.environ.get(TEST_BACKEND_MODULE_ENV)
        if module_name:
            module = importlib.import_module(module_name)
            return cast(Backend, module.make_test_backend(name))
        raise ConfigError(
            f"backend {name!r} is a test double; set {TEST_BACKEND_MODULE_ENV} to enable it "
            f"(only in tests) or choose one of {', '.join(BACKEND_NAMES)}"
        )
    raise ConfigError(f"backend {name!r} is unknown; choose one of {', '.join(BACKEND_NAMES)}")


def check_design_axes(name: str, axes: Sequence[str]) -> None:
    """Refuse, in one line, a design axis the backend `name` does not simulate."""
    supported = BACKEND_DESIGN_AXES.get(name, AXES)  # test doubles take any axis
    for axis in axes:
        if axis not in AXES:
            raise ConfigError(f"design axis {axis!r} is unknown; axes are {', '.join(AXES)}")
        if axis not in supported:
            raise ConfigError(
                f"backend {name!r} does not simulate the design axis {axis!r} (it takes "
                f"{', '.join(supported)}); drop that axis or use backend: mujoco"
            )


def validate_backend_settings(name: str, settings: dict[str, object]) -> None:
    """Check a config's `backend_settings` against the backend's own model, at load time."""
    from pydantic import ValidationError

    if name == "mujoco":
        from pec.backends.mujoco.settings import MujocoSettings

        try:
            MujocoSettings.model_validate(settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ConfigError(
                f"backend_settings.{field}: {first['msg'].removeprefix('Value error, ')} "
                "(see pec/backends/mujoco/settings.py)"
            ) from None
    elif name == "isaaclab":
        from pec.backends.isaaclab.settings import load_settings

        load_settings(settings)
