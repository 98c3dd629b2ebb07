"""Compile Warp's CPU kernels for the BALLU task once per machine (minutes cold).

``python -m pec.backends.isaaclab.warmup`` creates a one-env scene, steps and resets it, and
leaves a stamp in Warp's kernel cache (``~/.cache/warp``, or ``WARP_CACHE_PATH``) so the
next call returns at once. `scripts/test.sh` runs it before the tests.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    import torch
    import warp as wp

    from pec.backends.isaaclab.assets import asset_key, ensure_assets
    from pec.backends.isaaclab.settings import load_settings

    wp.config.quiet = True
    wp.init()  # type: ignore[no-untyped-call,unused-ignore]
    stamp = Path(str(wp.config.kernel_cache_dir)) / f"pec-ballu-warm-{asset_key()}"
    if stamp.is_file():
        print(f"Warp kernel cache already warm ({stamp.parent})")
        return 0
    from pec.backends.isaaclab.task import make_vec_env

    t0 = time.time()
    settings = load_settings({"task": {"episode_steps": 2}})
    env = make_vec_env(
        task=settings.task,
        gcr=np.array([0.85]),
        spcf=np.array([0.005]),
        start_level=0,
        seed=0,
        device="cpu",
        physics="newton",
        newton=settings.newton,
        assets=ensure_assets(),
    )
    for _ in range(3):  # the third step ends an episode: reset and re-anchoring compile too
        env.step(torch.zeros(1, 2))
    env.close()
    stamp.write_text(f"warmed in {time.time() - t0:.0f} s\n")
    print(f"Warp kernel cache warmed in {time.time() - t0:.0f} s ({stamp.parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
