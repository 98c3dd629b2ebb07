"""The run configuration: defaults, validation, overrides, the effective file and its hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from pec.errors import ConfigError
from pec.runs.config import PECConfig, build_config, load_config, parse_config_yaml, parse_override

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_follow_the_reference_sheet() -> None:
    cfg = PECConfig()
    assert (cfg.K, cfg.N_init, cfg.sigma_scale, cfg.F, cfg.pool_factor) == (3, 50, 0.10, 100, 20)
    assert (cfg.GCR_range, cfg.spcf_range) == ((0.75, 0.89), (0.001, 0.010))
    assert (cfg.border_inner_ld, cfg.border_outer_ld, cfg.auto_switch_iter) == (-0.5, -2.5, 18)
    assert (cfg.min_var_scale, cfg.min_designs, cfg.dl_initial, cfg.dl_buffer) == (0.01, 2, 0, 2)
    # the embedded backend resolves to small CPU sizes, Isaac Lab to the original's
    assert (cfg.effective_num_envs, cfg.effective_device) == (64, "cpu")
    gpu = PECConfig(backend="isaaclab")
    assert (gpu.effective_num_envs, gpu.effective_device) == (4096, "auto")
    assert PECConfig(seed=7).effective_init_seed == 7
    assert PECConfig(seed=7, init_seed=3).effective_init_seed == 3


def test_hash_ignores_key_order_and_changes_with_any_value(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("K: 2\nF: 8\n")
    b.write_text("F: 8\nK: 2\n")
    assert load_config(a).content_hash() == load_config(b).content_hash()
    assert load_config(a).content_hash() != load_config(a, {"F": 9}).content_hash()


def test_effective_yaml_round_trips_to_the_same_hash() -> None:
    cfg = build_config({"K": 4, "backend_settings": {"ppo": {"num_steps_per_env": 8}}})
    again = parse_config_yaml(cfg.to_yaml(), "pec_config.yaml")
    assert again == cfg.model_copy(update={"num_envs": 64, "device": "cpu", "init_seed": 0})
    assert again.content_hash() == cfg.content_hash()


def test_overrides_parse_yaml_values_and_none_means_not_given() -> None:
    assert parse_override("centers=[[0.8, 0.005]]") == ("centers", [[0.8, 0.005]])
    assert parse_override("sampling_mode=border") == ("sampling_mode", "border")
    cfg = build_config({"K": 2}, {"K": None, "F": 5})
    assert (cfg.K, cfg.F) == (2, 5)


def test_docker_options_reach_the_executor() -> None:
    cfg = build_config(
        {
            "executor": "docker",
            "docker_image": "pec-cpu:1",
            "gpus_per_expert": 1,
            "docker_network_mode": "host",
            "docker_user": "1000:1000",
        }
    )
    assert cfg.docker_options() == {
        "image": "pec-cpu:1",
        "gpus": 1,
        "network_mode": "host",
        "user": "1000:1000",
    }
    with pytest.raises(ConfigError, match="docker_image"):
        build_config({"executor": "docker"})


def test_level_search_is_the_default_and_recorded_runs_keep_their_protocol(
    tmp_path: Path,
) -> None:
    from pec.runs.job_records import StoreSpec
    from pec.runs.run import make_run, resolve_config, write_effective_config
    from pec.runs.store import LocalStore

    assert PECConfig().score == "level_search"
    assert PECConfig().protocol_record() == {
        "score": "level_search",
        "search_max_level": 74,
        "ceiling": 74,
    }
    assert load_config(CONFIGS / "embedded.yaml").score == "level_search"
    assert PECConfig(score="final_level").score == "final_level"  # the original's, selectable
    store = LocalStore(tmp_path)
    spec = StoreSpec(location=store.root_uri)
    # A run recorded under the old default: its full dump names its protocol.
    old = build_config({"K": 2, "score": "final_level", "num_episodes": 7, "start_difficulty": 4})
    write_effective_config(make_run(store, spec, "old", old))
    assert "score: final_level" in (tmp_path / "old" / "pec_config.yaml").read_text()
    resumed = resolve_config(store, "old", None, {})  # no --config: the recorded one
    assert resumed.score == "final_level"
    assert resumed.protocol_record() == {
        "score": "final_level",
        "num_episodes": 7,
        "start_difficulty": 4,
        "ceiling": 11,
    }
    # A new run without `score` gets the new default, and keeps it once recorded.
    write_effective_config(make_run(store, spec, "new", build_config({"K": 2})))
    assert resolve_config(store, "new", None, {}).score == "level_search"
