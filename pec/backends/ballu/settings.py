"""Task and PPO settings of the BALLU obstacle task, shared by the MuJoCo and Isaac Lab backends.

Defaults are the small, CPU-friendly values that learn on a 2-core machine; the original
study's values are given in each field's description so a GPU run can restore them. A few
fields only matter to one simulator (lanes: MuJoCo; the obstacle rows are Isaac Lab's).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pec.backends.ballu import facts
from pec.backends.ballu.terrain import RAMP, Terrain, terrain_for
from pec.runs.safe_io import StrictModel


class BalluTaskSettings(StrictModel):
    """Physics, control, episode, curriculum and reward settings of the BALLU tasks."""

    terrain: Literal["obstacle", "ramp"] = Field(
        "obstacle",
        description=(
            "the task: step over a box (obstacle) or climb a wedge (ramp, the original's ramp"
            " task); pec.backends.ballu.terrain"
        ),
    )
    physics_hz: float = Field(200.0, gt=0, description="physics rate (original 200 Hz)")
    control_hz: float = Field(20.0, gt=0, description="policy rate (original 20 Hz)")
    episode_steps: int = Field(400, ge=1, description="control steps per episode (20 s)")
    drag_coefficient: float = Field(0.4, ge=0, description="balloon drag C in -C|v|v; 0 = off")
    init_root_height: float = Field(
        facts.INIT_ROOT_HEIGHT, gt=0, description="pelvis height at reset (m)"
    )
    lane_spacing: float = Field(1.0, gt=0.2, description="y distance between robot lanes (m)")
    physics_block_envs: int = Field(
        64,
        ge=1,
        le=8192,
        description=(
            "MuJoCo only: robots per physics scene; a job's scenes step on its threads"
            " (results depend on this size, not on the thread count)"
        ),
    )
    obstacle_start_x: float = facts.OBSTACLE_START_X
    obstacle_length: float = Field(
        facts.OBSTACLE_LENGTH, gt=0, description="x extent of the box; a ramp's default is 1.5"
    )
    obstacle_width: float = Field(0.6, gt=0, description="obstacle extent in y (< lane_spacing)")
    goal_x: float = 2.0
    promote_x: float = 1.0
    demote_x: float = 0.5
    ground_friction: float = Field(facts.GROUND_FRICTION, ge=0)
    curriculum_warmup_iterations: int = Field(
        100, ge=0, description="PPO iterations before the level rule starts (original 100)"
    )
    goal_warmup_iterations: int = Field(
        100, ge=0, description="PPO iterations with zero goal reward (original 100)"
    )
    goal_ramp_iterations: int = Field(
        100, ge=0, description="iterations over which the goal reward ramps 0 -> 1 (orig. 100)"
    )
    warmup_clock: Literal["policy_age", "job"] = Field(
        "policy_age",
        description=(
            "what the three warm-ups count: 'policy_age' = every PPO iteration the policy has"
            " trained, so a warm start goes on where its checkpoint left them; 'job' = the"
            " iterations of the current training job, as the original scripts did (every warm"
            " start repeats them)"
        ),
    )
    replay_probability: float = Field(
        0.25,
        ge=0,
        le=1,
        description=(
            "training only: chance that an env's next episode is played at a uniformly drawn"
            " level in [0, level] without changing its level (keeps low obstacles in the data)"
        ),
    )
    goal_weight: float = facts.GOAL_WEIGHT
    height_weight: float = facts.HEIGHT_WEIGHT
    velocity_weight: float = facts.VELOCITY_WEIGHT
    reward_scale: float = Field(
        0.05, gt=0, description="multiplies every reward (control dt, as Isaac Lab's manager)"
    )
    gcr_norm_range: tuple[float, float] = (0.75, 0.89)
    spcf_norm_range: tuple[float, float] = (0.001, 0.010)
    leg_norm_range: tuple[float, float] = Field(
        (0.20, 0.48), description="leg lengths observed as [-1, 1] over this range (3-D runs)"
    )

    @model_validator(mode="after")
    def _check_rates(self) -> BalluTaskSettings:
        if self.terrain == "ramp" and "obstacle_length" not in self.model_fields_set:
            self.obstacle_length = RAMP.length  # the wedge's own length unless set
        ratio = self.physics_hz / self.control_hz
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(
                f"physics_hz/control_hz = {ratio} must be a whole number >= 1; pick matching rates"
            )
        if self.obstacle_width >= self.lane_spacing:
            raise ValueError("obstacle_width must be smaller than lane_spacing; widen the lanes")
        return self

    @property
    def terrain_shape(self) -> Terrain:
        """The terrain piece of this task, placed where these settings put it."""
        return terrain_for(self.terrain, self.obstacle_start_x, self.obstacle_length)

    @property
    def decimation(self) -> int:
        """Physics steps per control step."""
        return round(self.physics_hz / self.control_hz)


class PPOSettings(StrictModel):
    """rsl-rl-lib PPO settings (5.x keys); defaults sized for a 2-core CPU."""

    num_steps_per_env: int = Field(20, ge=1, description="rollout length (original 20)")
    save_interval: int = Field(25, ge=1, description="iterations between model_last.pt writes")
    actor_hidden_dims: list[int] = Field(default_factory=lambda: [128, 64, 32])
    critic_hidden_dims: list[int] = Field(default_factory=lambda: [128, 64, 32])
    activation: str = "elu"
    init_std: float = Field(0.5, gt=0)
    obs_normalization: bool = True
    num_learning_epochs: int = Field(5, ge=1)
    num_mini_batches: int = Field(4, ge=1)
    learning_rate: float = Field(1e-4, gt=0, description="original 1e-4 (adaptive)")
    schedule: Literal["adaptive", "fixed"] = "adaptive"
    desired_kl: float = Field(0.01, gt=0)
    gamma: float = Field(0.99, gt=0, le=1)
    lam: float = Field(0.95, gt=0, le=1)
    clip_param: float = Field(0.2, gt=0)
    entropy_coef: float = Field(0.01, ge=0)
    value_loss_coef: float = Field(1.0, ge=0)
    use_clipped_value_loss: bool = True
    max_grad_norm: float = Field(0.5, gt=0)
    design_inputs: Literal["fixed", "running"] = Field(
        "running",
        description="design columns normalised over the design box (fixed) or by each "
        "policy's own data (running, rsl-rl's); see pec.backends.ballu.design_inputs",
    )
