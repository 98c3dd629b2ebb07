"""A run: its store, name and effective configuration, and loading its state.

The CLI and the flows both open runs through this module: `open_run_store` turns a store
location into a store, `resolve_config` picks the configuration (flag, recorded, defaults),
and `load_run_state` / `load_state_or_fail` hold the one message for a run that has no state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pec.errors import ConfigError, NotFoundError, StateError
from pec.maths.design_space import DesignSpace
from pec.runs import layout
from pec.runs.config import PECConfig, build_config, load_config, parse_config_yaml
from pec.runs.job_records import StoreSpec
from pec.runs.run_names import validate_run_name
from pec.runs.state import PECState
from pec.runs.state_io import load_state
from pec.runs.store import S3Settings, Store, open_store


@dataclass(frozen=True)
class Run:
    """A run: where it lives, what it is called, how it is configured."""

    store: Store
    store_spec: StoreSpec
    name: str
    config: PECConfig

    @property
    def space(self) -> DesignSpace:
        return self.config.design_space


def make_run(store: Store, store_spec: StoreSpec, run_name: str, config: PECConfig) -> Run:
    return Run(store=store, store_spec=store_spec, name=validate_run_name(run_name), config=config)


def state_space(state: PECState) -> DesignSpace:
    """The design box a run was initialised with (from its state, not the config)."""
    return DesignSpace.from_bounds(
        {name: (float(lo), float(hi)) for name, (lo, hi) in state.design_space.items()}
    )


# ---------------------------------------------------------------- store and config


def open_run_store(location: str) -> tuple[Store, StoreSpec]:
    """A folder or s3://bucket/prefix; S3 endpoint and region come from the environment."""
    endpoint = os.environ.get("PEC_S3_ENDPOINT_URL") or None
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None
    if location.startswith("s3://"):
        store = open_store(location, S3Settings(endpoint_url=endpoint, region=region))
        return store, StoreSpec(location=location, endpoint_url=endpoint, region=region)
    store = open_store(location)
    return store, StoreSpec(location=store.root_uri)


def read_run_config(store: Store, run_name: str) -> PECConfig | None:
    """The effective config recorded in the run, or None before the first invocation."""
    key = layout.config_key(validate_run_name(run_name))
    try:
        data = store.read_bytes(key)
    except NotFoundError:
        return None
    return parse_config_yaml(data, source=f"{store.uri(key)}")


def resolve_config(
    store: Store, run_name: str, config_path: str | None, overrides: Mapping[str, Any]
) -> PECConfig:
    """--config file if given, else the run's recorded pec_config.yaml, else defaults; then overrides."""
    if config_path is not None:
        return load_config(config_path, dict(overrides))
    recorded = read_run_config(store, run_name)
    base = recorded.model_dump(mode="json") if recorded is not None else {}
    return build_config(base, dict(overrides), source="config")


def open_run(
    run_name: str,
    store: str,
    config: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Run:
    """Open the store, validate the name and resolve the configuration of one run."""
    store_obj, store_spec = open_run_store(store)
    name = validate_run_name(run_name)
    cfg = resolve_config(store_obj, name, config, dict(overrides or {}))
    return make_run(store_obj, store_spec, name, cfg)


def write_effective_config(run: Run) -> str:
    key = layout.config_key(run.name)
    run.store.write_bytes(key, run.config.to_yaml().encode())
    return key


# ---------------------------------------------------------------- state


def no_state_error(store: Store, run_name: str) -> StateError:
    """The one message for a run that has not been initialised."""
    return StateError(
        f"no run '{run_name}' in store {store.root_uri}; start it with `pec init` or `pec run`, "
        "or check --run_name and --store"
    )


def load_state_or_fail(store: Store, run_name: str) -> PECState:
    """The run's state (without a config to check it against), or the one StateError."""
    name = validate_run_name(run_name)
    loaded = load_state(store, name)
    if loaded is None:
        raise no_state_error(store, name)
    return loaded[0]


def check_compatible(config: PECConfig, state: PECState) -> None:
    """A run's shape is fixed at init: refuse configs that would silently change it."""
    if len(state.experts) != config.K:
        raise ConfigError(
            f"K: the run '{state.run_name}' has {len(state.experts)} experts but the config says "
            f"K={config.K}; keep K={len(state.experts)} or start a new run_name"
        )
    space = state.design_space
    if ("leg" in space) != (config.leg_range is not None):
        if config.leg_range is None:
            raise ConfigError(
                f"leg_range: the run '{state.run_name}' is 3-D (GCR x spcf x leg "
                f"{list(space['leg'])}) but the config has no leg_range; set leg_range: "
                f"{list(space['leg'])} or start a new run_name"
            )
        raise ConfigError(
            f"leg_range: the run '{state.run_name}' is 2-D (GCR x spcf) but the config sets "
            f"leg_range {list(config.leg_range)}; drop leg_range or start a new run_name"
        )
    ranges = [("GCR_range", config.GCR_range), ("spcf_range", config.spcf_range)]
    if config.leg_range is not None:
        ranges.append(("leg_range", config.leg_range))
    for name, rng in ranges:
        stored = space[name.removesuffix("_range")]
        if not np.allclose(np.asarray(stored, dtype=float), np.asarray(rng, dtype=float)):
            raise ConfigError(
                f"{name}: the run '{state.run_name}' was initialised with {list(stored)} but the "
                f"config says {list(rng)}; restore it or start a new run_name"
            )


def load_run_state(run: Run) -> tuple[PECState, str]:
    """The run's state and its version, checked against the run's config."""
    loaded = load_state(run.store, run.name)
    if loaded is None:
        raise no_state_error(run.store, run.name)
    state, version = loaded
    check_compatible(run.config, state)
    return state, version
