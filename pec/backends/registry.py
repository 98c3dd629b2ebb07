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
from typing import cast

from pec.backends.base import Backend
from pec.errors import ConfigError

BACKEND_NAMES = ("mujoco", "isaaclab")
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


def backend_design_axes(name: str) -> tuple[str, ...]:
    """The design axes backend `name` varies per environment (its class's ``design_axes``),
    known without building the backend or importing its simulator."""
    from pec.backends.base import backend_axes

    if name == "mujoco":
        from pec.backends.mujoco import MujocoBackend

        return backend_axes(MujocoBackend)
    if name == "isaaclab":
        from pec.backends.isaaclab import IsaacLabBackend

        return backend_axes(IsaacLabBackend)
    return backend_axes(get_backend(name))


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
