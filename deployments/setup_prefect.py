"""Create what pec's deployments expect on a Prefect server (idempotent; rerun freely).

- S3 result storage block `s3-bucket/pec-results` (+ credentials block `pec-aws`), so
  persisted task results (the skip-if-done cache) are visible from every container;
- work pools `pec-local` (process) and `pec-gpu` (docker, template docker-gpu-pool.json);
- with --gpus-per-host G, work queues `gpu-0` ... `gpu-<G-1>` on `pec-gpu`: one per GPU
  index; start one docker worker per queue and host with `--limit 1`, and each expert
  container gets its own GPU (flows/children.py routes expert k to `gpu-<k mod G>` with
  that device id);
- with --k8s-pool NAME, a Kubernetes work pool (template k8s-gpu-pool.json: one
  `nvidia.com/gpu` per expert pod) for a prefect-kubernetes worker in the cluster;
- a concurrency limit on `pec-gpu` only when asked: --gpu-pool-limit N, or --config FILE
  (its max_parallel_experts). Without one, the experts in flight are bounded by the run's
  max_parallel_experts and the workers' --limit.

Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION, PEC_S3_ENDPOINT_URL for MinIO/SeaweedFS/R2), never from arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from _server import connect
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate

HERE = Path(__file__).resolve().parent
RESULTS_BLOCK = "pec-results"
CREDENTIALS_BLOCK = "pec-aws"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results",
        default=os.environ.get("PEC_RESULTS_S3"),
        help="s3://bucket/prefix for Prefect results (default: $PEC_RESULTS_S3, else "
        "<PEC_STORE bucket>/prefect-results); omit both to skip the block",
    )
    parser.add_argument(
        "--gpu-pool-limit", type=int, default=None, help="pec-gpu concurrency (default: none)"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="pec-gpu concurrency = its max_parallel_experts"
    )
    parser.add_argument(
        "--gpus-per-host", type=int, default=0, help="create queues gpu-0..gpu-<N-1> on pec-gpu"
    )
    parser.add_argument("--local-pool", default="pec-local")
    parser.add_argument("--gpu-pool", default="pec-gpu")
    parser.add_argument(
        "--template", type=Path, default=HERE / "docker-gpu-pool.json", help="docker template"
    )
    parser.add_argument(
        "--k8s-pool", default=None, help="also create this Kubernetes pool (k8s-gpu-pool.json)"
    )
    parser.add_argument(
        "--k8s-template", type=Path, default=HERE / "k8s-gpu-pool.json", help="its template"
    )
    parser.add_argument("--skip-results", action="store_true", help="do not create blocks")
    return parser.parse_args(argv)


def results_location(explicit: str | None) -> tuple[str, str] | None:
    """(bucket, folder) for the results block, from --results or PEC_STORE."""
    source = explicit
    suffix = ""
    if source is None:
        store = os.environ.get("PEC_STORE", "")
        if not store.startswith("s3://"):
            return None
        source, suffix = store, "prefect-results"
    parsed = urlparse(source)
    if parsed.scheme != "s3" or not parsed.netloc:
        sys.exit(f"error: --results {source!r} is not s3://bucket[/prefix]; fix the value")
    folder = "/".join(p for p in (parsed.path.strip("/"), suffix) if p)
    return parsed.netloc, folder


def save_results_block(bucket: str, folder: str) -> None:
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters
    from pydantic import SecretStr

    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        sys.exit("error: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set; export them")
    endpoint = os.environ.get("PEC_S3_ENDPOINT_URL") or None
    credentials = AwsCredentials(
        aws_access_key_id=key,
        aws_secret_access_key=SecretStr(secret),
        region_name=os.environ.get("AWS_DEFAULT_REGION") or None,
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    )
    credentials.save(CREDENTIALS_BLOCK, overwrite=True)
    S3Bucket(bucket_name=bucket, bucket_folder=folder, credentials=credentials).save(
        RESULTS_BLOCK, overwrite=True
    )
    print(f"block s3-bucket/{RESULTS_BLOCK} -> s3://{bucket}/{folder} (endpoint {endpoint})")


def read_template(path: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        sys.exit(f"error: cannot read job template {path}: {exc}")
    return data


def pool_limit(args: argparse.Namespace) -> int | None:
    """--gpu-pool-limit, else the config's max_parallel_experts, else None (no limit)."""
    if args.gpu_pool_limit is not None:
        if args.gpu_pool_limit < 1:
            sys.exit("error: --gpu-pool-limit must be >= 1 (GPUs the pool may use at once)")
        return int(args.gpu_pool_limit)
    if args.config is None:
        return None
    from pec.errors import PECError
    from pec.runs.config import load_config

    try:
        return load_config(args.config).max_parallel_experts
    except PECError as exc:
        sys.exit(f"error: --config {args.config}: {exc}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = pool_limit(args)
    if not 0 <= args.gpus_per_host <= 64:
        sys.exit("error: --gpus-per-host must be 0..64 (GPUs on each GPU host)")
    template = read_template(args.template)
    k8s_template = read_template(args.k8s_template) if args.k8s_pool else None
    client = connect()
    try:
        client.create_work_pool(WorkPoolCreate(name=args.local_pool, type="process"), True)
        print(f"work pool {args.local_pool} (process)")
        client.create_work_pool(
            WorkPoolCreate(name=args.gpu_pool, type="docker", base_job_template=template), True
        )
        client.update_work_pool(args.gpu_pool, WorkPoolUpdate(concurrency_limit=limit))
        shown = "no concurrency limit" if limit is None else f"concurrency {limit}"
        print(f"work pool {args.gpu_pool} (docker, {shown})")
        existing = {q.name for q in client.read_work_queues(work_pool_name=args.gpu_pool)}
        for index in range(args.gpus_per_host):
            name = f"gpu-{index}"
            if name not in existing:
                client.create_work_queue(name=name, work_pool_name=args.gpu_pool)
            print(f"work queue {args.gpu_pool}/{name} (GPU {index} of each host)")
        if k8s_template is not None:
            client.create_work_pool(
                WorkPoolCreate(
                    name=args.k8s_pool, type="kubernetes", base_job_template=k8s_template
                ),
                True,
            )
            print(f"work pool {args.k8s_pool} (kubernetes, one nvidia.com/gpu per expert pod)")
    finally:
        client.__exit__(None, None, None)
    location = None if args.skip_results else results_location(args.results)
    if location is None:
        print("results block skipped (no --results and PEC_STORE is not s3://)")
    else:
        save_results_block(*location)
    return 0


if __name__ == "__main__":
    sys.exit(main())
