"""Flow `pec-distill`: one student distilled from a run's experts, optionally scored.

`pec.evaluation.distill.distill_student` with the Prefect job runner (each stage a
`distill-stage` task run; finished stages are reused from the store by the driver, so the
task keeps no cache of its own), then, given designs, `evaluate_student` (a
`final-eval-expert` task run) -> a markdown artifact. `pec distill` runs the same driver
with a local runner; this module only orchestrates.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.artifacts import artifact_key
from flows.credentials import apply_aws_credentials
from flows.final_eval_flow import _load_designs
from flows.tasks import PrefectJobRunner, evaluate_final_expert, execute_job
from pec.evaluation.distill import DEFAULT_ROUTER, distill_student, evaluate_student
from pec.evaluation.final_eval_jobs import final_protocol
from pec.jobs.plan import ExecutorPlan
from pec.jobs.spec import parse_job_spec
from pec.runs.run import load_run_state, open_run


@task(
    name="distill-stage",
    task_run_name="distill-stage-{spec[iteration]}",
    persist_result=True,
    result_serializer="json",
)
def distill_stage(spec: dict[str, Any], config_hash: str, plan: ExecutorPlan) -> dict[str, Any]:
    """One distillation stage (imitation or PPO fine-tune); returns the TrainJobResult as JSON."""
    return execute_job(parse_job_spec(spec), plan).model_dump(mode="json")


@flow(name="pec-distill", result_serializer="json")
def pec_distill(
    run_name: str,
    iterations: int = 100,
    finetune_iterations: int = 0,
    num_envs: int | None = None,
    router: str = DEFAULT_ROUTER,
    learning_rate: float = 3e-3,
    store: str = "runs",
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    designs_file: str | None = None,
    designs: list[dict[str, Any]] | None = None,
    designs_stem: str | None = None,
    score: str | None = None,
    aws_credentials_block: str | None = None,
) -> dict[str, Any]:
    """Distil `run_name`'s experts into one student (`pec distill`); with designs, score it.

    Returns the student's checkpoint URI, the env steps it used (all stages) and, when
    scored, its mean level.
    """
    apply_aws_credentials(aws_credentials_block)
    run = open_run(run_name, store, config, overrides)
    state, _ = load_run_state(run)
    scored = designs_file is not None or designs is not None
    points, stem = _load_designs(run, designs_file, designs, designs_stem) if scored else ([], "")
    protocol = final_protocol(run.config, score, None, None, flag="") if scored else None
    record = distill_student(
        run,
        state,
        PrefectJobRunner(run, train_task=distill_stage),
        iterations=iterations,
        finetune_iterations=finetune_iterations,
        num_envs=num_envs,
        router=router,
        learning_rate=learning_rate,
        exclude_stem=stem or None,
    )
    result: dict[str, Any] = {
        "run_name": run.name,
        "checkpoint": record["checkpoint"],
        "env_steps": record["env_steps"],
        "student_mean": None,
    }
    lines = [
        f"# Student of `{run.name}`",
        "",
        (
            f"- {len(record['teachers'])} teachers, labels by {record['router']} "
            f"(share per expert {record['label_share']})"
        ),
        (
            f"- stages {record['plan']} (imitation, then PPO fine-tune), "
            f"{record['env_steps']:.0f} env steps"
        ),
        f"- checkpoint {record['checkpoint']}",
    ]
    if protocol is not None:
        payload = evaluate_student(
            run,
            state,
            points,
            stem,
            PrefectJobRunner(run, eval_task=evaluate_final_expert),
            num_episodes=protocol.num_episodes,
            start_difficulty=protocol.start_difficulty,
            score=protocol.score,
        )
        result["student_mean"] = payload["mean"]
        lines.append(f"- mean level on {stem}: {payload['mean']:.3f} ({protocol.score})")
    create_markdown_artifact(
        "\n".join(lines) + "\n",
        key=artifact_key(run.name, "distill"),
        description=f"{run.name}: distilled student",
    )
    return result
