"""Read one BALLU robot's physical numbers back from a compiled MuJoCo model."""

from __future__ import annotations

import mujoco
import numpy as np

from pec.backends.mujoco.model import BODIES_PER_ROBOT, DOF_PER_ROBOT


def robot_numbers(model: mujoco.MjModel, robot: int = 0) -> dict[str, np.ndarray]:
    """One robot's physical numbers from a compiled MjModel (robot i of a scene)."""
    bodies = 1 + robot * BODIES_PER_ROBOT + np.arange(BODIES_PER_ROBOT)
    dofs = robot * DOF_PER_ROBOT + np.arange(DOF_PER_ROBOT)
    feet = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n) for n in _foot_names(model)]
    feet = [f for f in feet if model.geom_bodyid[f] in bodies]
    return {
        "body_mass": model.body_mass[bodies],
        "body_inertia": model.body_inertia[bodies],
        "body_ipos": model.body_ipos[bodies],
        "body_pos_local": model.body_pos[bodies[1:]],  # the first one holds the lane offset
        "dof_damping": model.dof_damping[dofs],
        "dof_armature": model.dof_armature[dofs],
        "jnt_range": model.jnt_range[dofs],
        "jnt_limited": model.jnt_limited[dofs].astype(float),
        "foot_friction": model.geom_friction[feet],
        "foot_size": model.geom_size[feet],
        "foot_condim": model.geom_condim[feet].astype(float),
        "foot_solref": model.geom_solref[feet],
        "foot_solimp": model.geom_solimp[feet],
        "cone": np.array([model.opt.cone]),
        "integrator": np.array([model.opt.integrator]),
    }


def _foot_names(model: mujoco.MjModel) -> list[str]:
    return [model.geom(g).name for g in range(model.ngeom) if model.geom(g).name.startswith("foot")]
