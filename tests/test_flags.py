"""The nodes' flags come from the config dataclasses (serl_gs.nodes.flags): every flag's default is its field's
one default, the entry points define none, presets are defined once and are what the scripts run, and bad input
is one line. In-process: parsing only, no node starts."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from actors import actor as actor_main
from actors import evaluate as eval_main
from benchmarks.gpu_learn import Plan
from learners import learner as learner_main
from serl_gs.agents.config import cpu_pixel_preset
from serl_gs.nodes.actor import ActorConfig
from serl_gs.nodes.cli import InterventionOptions, NodeOptions, PresetOption, RenderOptions
from serl_gs.nodes.evaluation import EvalConfig
from serl_gs.nodes.flags import FlagError, Layout, flag_fields, parse
from serl_gs.nodes.learner import LearnerConfig
from serl_gs.nodes.presets import PRESETS, preset, replaced

ROOT = Path(__file__).resolve().parents[1]


def _roots(node: str) -> dict:
    from serl_gs.demos.sources import TaperedSchedule

    if node == "learner":
        return {"learner": LearnerConfig(), "node": NodeOptions(), "preset": PresetOption()}
    if node == "actor":
        return {"actor": ActorConfig(), "render": RenderOptions(), "intervention": InterventionOptions(),
                "schedule": TaperedSchedule(), "node": NodeOptions(), "preset": PresetOption()}  # fmt: skip
    return {"eval": EvalConfig, "render": RenderOptions(), "node": NodeOptions()}


LAYOUTS = {"learner": learner_main.layout, "actor": actor_main.layout, "eval": Layout}


def _owner_default(roots: dict, path: str):
    """The default the field at `path` has in its own dataclass (MISSING where the class has none)."""
    name, *parts = path.split(".")
    value = roots[name]
    for part in parts[:-1]:
        value = getattr(value, part)
    field = {f.name: f for f in dataclasses.fields(value)}[parts[-1]]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


@pytest.mark.parametrize("node", ["learner", "actor", "eval"])
def test_every_flag_default_is_the_one_default_of_its_field(node):
    roots, layout = _roots(node), LAYOUTS[node]()
    flags = flag_fields(roots, layout)
    assert len(flags) > 5
    for flag, (path, default) in flags.items():
        own = _owner_default(roots, path)
        if own is dataclasses.MISSING:  # a required field: its one default is the enclosing config's, or none
            continue
        convert = layout.convert.get(path)
        assert default == (convert.to_flag(own) if convert else own), (
            f"--{flag} ({path}) defaults to {default!r}, its dataclass to {own!r}: two defaults"
        )


def test_the_entry_points_parse_to_the_configs_own_defaults():
    assert learner_main.parse_config([]) == LearnerConfig()
    parsed = actor_main.parse_flags([])
    assert parsed["actor"] == ActorConfig() and parsed["render"] == RenderOptions()
    assert eval_main.parse_flags(["--checkpoint", "runs/x"])["eval"] == EvalConfig("runs/x")


def test_the_entry_points_define_no_flag_and_no_default():
    """No flag definitions, no dataclasses (their defaults belong in the library), no argparse, no absl flags."""
    for path in ("learners/learner.py", "actors/actor.py", "actors/evaluate.py"):
        tree = ast.parse((ROOT / path).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                raise AssertionError(f"{path} defines class {node.name}: configs and their defaults live in serl_gs")
            if isinstance(node, ast.Attribute):
                assert not node.attr.startswith("DEFINE_") and node.attr != "add_argument", (path, node.attr)
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
                assert not any(n in ("absl", "argparse", "absl.flags") for n in names), (path, names)


def test_flag_names_users_type_are_kept_and_learning_rates_are_separate():
    learner = flag_fields(_roots("learner"), learner_main.layout())
    actor = flag_fields(_roots("actor"), actor_main.layout())
    for name in ("env", "obs_mode", "image_size", "cameras", "frame_stack", "run_dir", "port", "bind", "utd",
                 "training_starts", "rate_tolerance", "auto_tolerance", "replay_capacity", "batch_size",
                 "hidden_dims", "encoder_channels", "encoder_latent_dim", "augmentation_pad", "demo_path", "wandb",
                 "auth_secret_file", "actor_lr", "critic_lr", "temperature_lr", "preset", "verbosity"):  # fmt: skip
        assert name in learner, name
    assert "lr" not in learner and "render_backend" not in learner and "frame_stack" in learner
    assert learner["training_starts"][0] == "learner.rate.min_inserts"
    for name in ("num_envs", "learner_host", "port", "actor_id", "away_buffer_mb", "resets_per_step", "physics",
                 "render_backend", "render_threads", "intervention", "intervention_start", "intervention_taper_steps",
                 "preset", "verbosity"):  # fmt: skip
        assert name in actor, name
    config = learner_main.parse_config(["--actor_lr", "1e-3", "--critic_lr", "2e-3", "--temperature_lr", "3e-3"])
    assert (config.agent.actor_lr, config.agent.critic_lr, config.agent.temperature_lr) == (1e-3, 2e-3, 3e-3)


def test_values_reach_nested_fields_and_derived_ones_follow():
    config = learner_main.parse_config([
        "--env", "serl_gs/CartpoleBalance-v0", "--obs_mode", "pixels", "--frame_stack", "3", "--cameras", "a", "b",
        "--hidden_dims", "64", "64", "--encoder_channels", "8", "--port", "6000", "--no_save_replay",
        "--demo_path", "x.hdf5", "--demo_path", "y.hdf5", "--episode_length", "20", "--training_starts", "7",
    ])  # fmt: skip
    assert config.env.cameras == ("a", "b") and config.env.episode_length == 20
    assert config.replay.frame_stack == 3  # derived from the env, in one place
    ports = (config.transport.transitions_port, config.transport.params_port, config.transport.params_snapshot_port)
    assert ports == (6000, 6001, 6002)
    assert config.agent.hidden_dims == (64, 64) and config.agent.encoder.channels == (8,)
    assert not config.save_replay and config.demo_paths == ("x.hdf5", "y.hdf5") and config.rate.min_inserts == 7
    parsed = actor_main.parse_flags(["--away_buffer_mb", "3", "--resets_per_step", "all", "--seed", "5",
                                     "--intervention", "scripted", "--intervention_start", "0.25"])  # fmt: skip
    actor = parsed["actor"]
    assert actor.transport.away_buffer_bytes == 3 << 20 and actor.resets_per_step is None
    assert parsed["schedule"].seed == 5 and parsed["schedule"].start == 0.25
    assert eval_main.parse_flags(["--checkpoint", "r", "--num_envs", "1"])["eval"].video_episodes == 1


def test_a_preset_is_the_defaults_and_explicit_flags_override_it():
    config = learner_main.parse_config(["--preset", "cpu_pixels", "--utd", "0.7", "--run_dir", "runs/p"])
    want = preset("cpu_pixels").learner
    assert config.rate.utd == 0.7 and config.run_dir == "runs/p"
    assert config == replaced(want, {"rate": {"utd": 0.7}, "run_dir": "runs/p", "replay": {"frame_stack": 3}})
    assert config.agent == cpu_pixel_preset().agent  # defined once: the agent the benchmarks measure
    actor = actor_main.parse_flags(["--preset", "cpu_pixels"])["actor"]
    assert actor == preset("cpu_pixels").actor and actor.env == config.env
    for name in PRESETS:  # each preset's two nodes agree on the task
        run = preset(name)
        assert run.learner.env.task() == run.actor.env.task(), name
    with pytest.raises(ValueError, match="--preset must be one of"):
        learner_main.parse_config(["--preset", "no_such"])


def _script_arrays(path: str) -> dict[str, str]:
    """The learner_args=( ... ) and actor_args=( ... ) arrays of a demo script, as written."""
    text = (ROOT / path).read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"^(learner_args|actor_args)=\((.*?)\)$", text, re.M | re.S)}


# What a script may pass beside its preset: where this run writes and listens, and the caps its variables set.
RUN_FLAGS = {"--preset", "--run_dir", "--port", "--max_updates", "--max_seconds", "--keep_checkpoints",
             "--stop_success", "--stop_return", "--success_window", "--learner_host", "--demo_path"}  # fmt: skip


@pytest.mark.parametrize("script, name", [("run_demo.sh", "pick_state"), ("scripts/demo_pixels.sh", "pick_pixels")])
def test_the_scripts_run_their_preset_and_retype_none_of_it(script, name):
    arrays = _script_arrays(script)
    assert set(arrays) == {"learner_args", "actor_args"}, arrays
    for array in arrays.values():
        assert f"--preset {name}" in array, array
        assert set(re.findall(r"--\w+", array)) <= RUN_FLAGS, array
    text = (ROOT / script).read_text()
    overrides = set(re.findall(r"[A-Z_]+=(--\w+)", text))  # demo_env_flags: a variable overrides a flag
    assert overrides and overrides <= RUN_FLAGS, overrides


def test_the_gpu_run_is_its_preset():
    plan = Plan.for_run(dry_run=False)
    config = learner_main.parse_config(plan.learner_args(Path("runs/g"), 6000, 400.0))
    want = preset("gpu_pixels").learner
    assert config == replaced(want, {"run_dir": "runs/g", "max_seconds": 400.0, "transport": config.transport})
    assert config.transport.transitions_port == 6000
    actor = actor_main.parse_flags(plan.actor_args(Path("runs/g"), 6000))["actor"]
    assert replaced(actor, {"transport": preset("gpu_pixels").actor.transport}) == replaced(
        preset("gpu_pixels").actor, {"run_dir": "runs/g"}
    )
    dry = Plan.for_run(dry_run=True)  # the dry run overrides sizes, never the recipe
    dry_config = learner_main.parse_config(dry.learner_args(Path("r"), 6000, 60.0))
    assert dry_config.agent.encoder == want.agent.encoder and dry_config.agent.batch_size == 8


def test_bad_values_are_one_line_errors_naming_the_flag():
    with pytest.raises(FlagError, match=r"^Error parsing --utd: could not convert string to float: 'x'$"):
        learner_main.parse_config(["--utd", "x"])
    with pytest.raises(FlagError, match=r"^Unrecognized options: --lr$"):
        learner_main.parse_config(["--lr"])
    with pytest.raises(ValueError, match="utd must be positive"):
        learner_main.parse_config(["--utd", "0"])


def test_help_exits_0_and_shows_each_flag_with_its_help(capsys):
    with pytest.raises(SystemExit) as e:
        learner_main.parse_config(["--preset", "cpu_pixels", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for text in ("--training_starts", "transitions in the replay before the first update", "--actor_lr",
                 "--preset", "--verbosity"):  # fmt: skip
        assert text in out, text
    assert "(default: 0.5)" in out  # the preset's utd is the default shown
    assert all(name in out for name in PRESETS)


def test_verbosity_sets_the_libraries_log_level():
    import logging

    absl_logger, root = logging.getLogger("absl"), logging.getLogger()
    before = absl_logger.level, root.level
    try:
        actor_main.parse_flags(["--verbosity", "-1"])  # absl's scale: warnings too (serl_gs.logs)
        assert absl_logger.level == root.level == logging.WARNING
        actor_main.parse_flags([])  # none given: errors only
        assert absl_logger.level == root.level == logging.ERROR
    finally:
        absl_logger.setLevel(before[0])
        root.setLevel(before[1])


def test_parse_refuses_two_fields_under_one_flag():
    @dataclasses.dataclass(frozen=True)
    class A:
        seed: int = 0

    with pytest.raises(ValueError, match="flag --seed names both a.seed and b.seed"):
        parse([], {"a": A(), "b": A()}, Layout(), prog="x", description="")
