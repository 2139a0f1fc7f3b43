"""The one option table: its invariants, the run configuration parsed once per option values,
the capacity options, the target's command line built from it, and ``wsload options``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wsload.capacity.options import CAPACITY_SPECS, STEP_SPECS
from wsload.capacity.slo import SLO, SLO_OPTIONS
from wsload.config.listing import option_table, render_options
from wsload.config.options import OPTION_SPECS, forget_run_configs, run_config
from wsload.config.spec import GROUPS, OptionSpec, add_argparse_arguments
from wsload.config.target_knobs import TARGET_SPECS
from wsload.errors import ConfigError
from wsload.target.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def namespace(**values: object) -> argparse.Namespace:
    """What Locust's parser gives: every option at its default, then ``values``."""
    ns = argparse.Namespace(**{spec.dest: spec.default for spec in OPTION_SPECS})
    for dest, value in values.items():
        assert hasattr(ns, dest), dest
        setattr(ns, dest, value)
    return ns


@pytest.fixture(autouse=True)
def fresh_configs():
    forget_run_configs()
    yield
    forget_run_configs()


# the table ---------------------------------------------------------------------------------
def test_every_option_is_declared_once_with_its_own_variable():
    every = OPTION_SPECS + TARGET_SPECS
    assert all(isinstance(spec, OptionSpec) and spec.group in GROUPS for spec in every)
    for specs in (OPTION_SPECS, TARGET_SPECS):
        assert len({s.flag for s in specs}) == len(specs)
        assert len({s.dest for s in specs}) == len(specs)
    envs = [s.env for s in OPTION_SPECS]
    assert all(envs) and len(set(envs)) == len(envs)
    assert {s.group for s in OPTION_SPECS} == {"run", "gate", "capacity", "slo"}
    assert {s.group for s in TARGET_SPECS} == {"target"}
    assert set(CAPACITY_SPECS) <= set(OPTION_SPECS) and set(SLO_OPTIONS) <= set(CAPACITY_SPECS)


def test_secrets_repeatable_and_start_up_options_stay_out_of_the_web_form():
    by_flag = {s.flag: s for s in OPTION_SPECS}
    assert not by_flag["--jwt-secret"].web_ui and by_flag["--jwt-secret"].secret
    assert not by_flag["--threshold"].web_ui and not by_flag["--goodput-limit"].web_ui
    assert not by_flag["--target-args"].web_ui
    for spec in OPTION_SPECS:
        if spec.secret or spec.action == "append":
            assert not spec.web_ui, spec.flag
    assert by_flag["--think-time"].web_ui and by_flag["--step-start"].web_ui
    assert not any(spec.web_ui for spec in TARGET_SPECS)


def test_help_texts_are_valid_for_argparse_and_read_plainly():
    parser = argparse.ArgumentParser()
    add_argparse_arguments(parser, OPTION_SPECS)
    text = parser.format_help()  # raises on a stray % in a help text
    assert "--step-search" in text and "--slo-failure-rate" in text
    threshold = next(s for s in OPTION_SPECS if s.flag == "--threshold")
    assert "1%%" in threshold.help and "1%" in threshold.plain_help()
    assert "%%" not in threshold.plain_help()
    port = next(s for s in TARGET_SPECS if s.flag == "--port")
    assert port.plain_help() == "TCP port, 0 picks a free one (8765)"


# parsed once --------------------------------------------------------------------------------
def test_a_second_call_with_the_same_values_reads_no_file(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("first message\n")
    profile = tmp_path / "profile.toml"
    profile.write_text('name = "once"\n')
    ns = namespace(corpus=str(corpus), ws_profile=str(profile))
    first = run_config(ns)
    assert first.corpus.messages == ("first message",) and first.profile.name == "once"
    corpus.write_text("changed\n")
    profile.unlink()  # reading it again would fail
    again = run_config(namespace(corpus=str(corpus), ws_profile=str(profile)))
    assert again is first
    assert again.corpus.messages == ("first message",)


def test_files_are_read_once_even_when_other_values_change(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello\n")
    first = run_config(namespace(corpus=str(corpus)))
    corpus.unlink()
    # the embedded target sets the secret after the first parse: no file is read again
    second = run_config(namespace(corpus=str(corpus), jwt_secret="s" * 40, think_time="2"))
    assert second is not first and second.corpus is first.corpus
    assert second.jwt_secret == "s" * 40 and second.think_time.a == 2.0
    forget_run_configs()
    with pytest.raises(ConfigError, match="--corpus"):
        run_config(namespace(corpus=str(corpus)))


def test_the_configuration_is_immutable():
    config = run_config(namespace())
    with pytest.raises(AttributeError):
        config.probe_users = 3  # type: ignore[misc]


def test_values_typed_into_the_web_form_are_parsed_and_checked():
    config = run_config(namespace(token_lifetime="300", ack_timeout=" 2.5", probe_users="0"))
    assert config.token_lifetime_s == 300.0 and config.ack_timeout_s == 2.5
    assert config.probe_users == 0
    with pytest.raises(ConfigError, match="--token-lifetime must be a number, got 'soon'"):
        run_config(namespace(token_lifetime="soon"))
    with pytest.raises(ConfigError, match="--probe-users must be a whole number"):
        run_config(namespace(probe_users="1.5"))
    with pytest.raises(ConfigError, match="--ws-carrier 'pigeon' is not one of"):
        run_config(namespace(ws_carrier="pigeon"))
    with pytest.raises(ConfigError, match="--pong-timeout must be greater than 0"):
        run_config(namespace(pong_timeout=0.0))


def test_repeatable_and_switch_values_from_any_source():
    config = run_config(namespace(threshold="turn:e2e p95 < 5s", no_security_gate="true"))
    assert len(config.gate.thresholds) == 1 and config.user_thresholds
    assert not config.gate.security
    listed = run_config(namespace(threshold=["turn:e2e p95 < 5s", "connect p95 < 1s"]))
    assert len(listed.gate.thresholds) == 2


# capacity options ---------------------------------------------------------------------------
def test_step_settings_and_slo_come_from_the_run_configuration():
    config = run_config(
        namespace(step_start=10, step_size=10, step_max=40, step_search=True, slo_e2e_p95=900.0)
    )
    assert (config.steps.start, config.steps.size, config.steps.max_users) == (10, 10, 40)
    assert config.steps.search
    assert config.slo == SLO(e2e_p95_ms=900.0)
    default = run_config(namespace())
    assert default.slo == SLO() and not default.steps.search and default.steps.start == 5


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"step_start": 5, "step_max": 2}, "--step-max must be at least --step-start"),
        ({"step_hold": 0.0}, "--step-hold must be greater than 0"),
        ({"step_size": "x"}, "--step-size must be a whole number"),
        ({"slo_e2e_p95": -1.0}, "--slo-e2e-p95 must be 0 or more"),
    ],
)
def test_bad_step_options_are_configuration_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        run_config(namespace(**values))


def test_slo_from_run_json_options_uses_the_declared_fields():
    assert {s.field for s in SLO_OPTIONS} == set(SLO().as_dict())
    slo = SLO.from_options({"slo_e2e_p95": 900.0, "slo_failure_rate": None}, auth_p95_ms=7)
    assert slo == SLO(e2e_p95_ms=900.0, auth_p95_ms=7.0)
    assert [s.dest for s in STEP_SPECS][:2] == ["step_start", "step_size"]


def test_capacity_modules_and_the_load_shape_never_import_pandas():
    code = textwrap.dedent(
        """
        import sys
        import wsload.capacity.options, wsload.capacity.slo, wsload.capacity.step_plan
        import wsload.capacity.steps_file, wsload.config.options, wsload.analysis.slo
        import wsload.locust.shapes
        heavy = sorted(m for m in ("pandas", "numpy", "scipy", "matplotlib") if m in sys.modules)
        print(",".join(heavy) or "none")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "none"


def test_locust_registers_every_option_with_its_variable_and_form_flag():
    code = textwrap.dedent(
        """
        from locust.argument_parser import get_parser
        from wsload.config.options import OPTION_SPECS, run_config
        from wsload.config.spec import add_locust_arguments
        parser = get_parser()
        add_locust_arguments(parser, OPTION_SPECS)
        parser.format_help()
        ns = parser.parse_args(["-f", "x.py", "--step-search", "--threshold", "auth p95 < 1s"])
        config = run_config(ns)
        form = sorted(parser.args_included_in_web_ui)
        print(config.steps.start, config.steps.search, config.slo.e2e_p95_ms, config.think_time)
        print(" ".join(form))
        """
    )
    env = {**os.environ, "WSLOAD_STEP_START": "7", "WSLOAD_SLO_E2E_P95": "1200"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    values, form = done.stdout.splitlines()
    assert values.startswith("7 True 1200.0 ")
    in_form = set(form.split())
    assert {"think_time", "step_start", "slo_e2e_p95", "results"} <= in_form
    assert not {"jwt_secret", "threshold", "goodput_limit", "target_args"} & in_form


# the reference target's command line -----------------------------------------------------------
def test_the_target_command_line_is_the_knob_table():
    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    for spec in TARGET_SPECS:
        action = actions[spec.dest]
        assert action.option_strings == [spec.flag]
        assert action.default == spec.default
    assert len(actions) == len(TARGET_SPECS) + 1  # and --help
    args = parser.parse_args(["--ttfe", "0.2", "--reject-at-upgrade", "401", "--not-ready"])
    assert (args.ttfe, args.reject_at_upgrade, args.not_ready) == (0.2, 401, True)
    text = parser.format_help()
    for spec in TARGET_SPECS:
        assert spec.flag in text
    for section in ("serving", "agent turn", "faults (fractions F"):
        assert section in text


# wsload options -------------------------------------------------------------------------------
def test_the_listing_names_every_option_with_its_variable():
    text = render_options()
    for spec in OPTION_SPECS + TARGET_SPECS:
        assert f"  {spec.flag}" in text, spec.flag
        if spec.env:
            assert spec.env in text, spec.env
    assert "%%" not in text and "%(default)s" not in text
    for title in ("run:", "gate:", "capacity:", "slo:", "target:"):
        assert f"\n{title}" in text
    only_gate = render_options(("gate",))
    assert "--threshold" in only_gate and "--think-time" not in only_gate
    assert list(option_table(("slo", "run"))) == ["slo", "run"]


def test_the_docs_list_every_option_of_the_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    options = readme[readme.index("### Options") : readme.index("## Browser-like sessions")]
    assert "`wsload options`" in options
    for spec in OPTION_SPECS:
        if spec.group in ("run", "gate"):
            assert f"`{spec.flag}`" in options, spec.flag
    analysis = (REPO / "docs" / "analysis.md").read_text(encoding="utf-8")
    for spec in CAPACITY_SPECS:
        assert f"| `{spec.flag}` | `{spec.env}` |" in analysis, spec.flag


def test_the_offline_gate_takes_every_gate_option_of_a_run_by_the_same_name():
    from wsload.gate.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    offline = {flag for action in parser._actions for flag in action.option_strings}
    for spec in OPTION_SPECS:
        if spec.group == "gate":
            assert spec.flag in offline, spec.flag
