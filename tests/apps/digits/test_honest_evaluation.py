# SPDX-License-Identifier: Apache-2.0
"""The evaluation's honesty: disjoint validation and test splits, quality goals with their
verdicts, mean and spread over seeds, tuning on the validation split only."""

import json
import math

import numpy as np
import pytest
import torch

from lcengine.apps.digits.commands import summary_table
from lcengine.apps.digits.evaluation import (
    EVAL_SPLITS,
    FCD_RATIO_TARGET,
    IDENTITY_TARGET,
    evaluation_rows,
    quality_goals,
)
from lcengine.apps.digits.seeds import (
    headline_figures,
    render_seeds,
    run_seeds,
    summarize_seeds,
)
from lcengine.apps.digits.tuning import ACTOR_ROW, render_tuning, tune
from lcengine.apps.digits.tuning import main as tuning_main
from lcengine.cli import main
from lcengine.method.run import load_run


def test_validation_and_test_splits_are_disjoint_and_balanced(mnist):
    digits = mnist.heldout_digits  # 100 of each digit
    val = evaluation_rows(0, digits, "validation", 10_000)
    test = evaluation_rows(0, digits, "test", 10_000)
    assert len(val) == len(test) == 500 and not set(val) & set(test)
    assert np.bincount(digits[val], minlength=10).tolist() == [50] * 10
    assert np.bincount(digits[test], minlength=10).tolist() == [50] * 10
    assert np.array_equal(evaluation_rows(0, digits, "test", 10_000), test)  # seeded
    assert not np.array_equal(evaluation_rows(1, digits, "test", 10_000), test)
    few = evaluation_rows(0, digits, "test", 40)
    assert len(few) == 40 and set(few) <= set(test)
    assert set(EVAL_SPLITS) == {"validation", "test"}
    with pytest.raises(ValueError, match="split must be one of"):
        evaluation_rows(0, digits, "train", 10)


def _row(identity, all_right, fcd):
    return {"per_group": {"digit": {"accuracy": identity}}, "row_accuracy": all_right, "fcd": fcd}


def _metrics(actor_identity=0.98, optimize_fcd=100.0, thick=(0.95, 0.6), baseline=(0.9, 0.5)):
    return {
        "conditional": {
            "real": _row(0.98, 0.98, 10.0),
            "chance": _row(0.1, 0.01, None),
            "reconstruction": _row(0.93, 0.6, 50.0),
            "prior": _row(0.1, 0.0, 700.0),
            "actor": _row(actor_identity, 0.7, 60.0),
            "optimize": _row(0.975, 0.65, optimize_fcd),
            "baseline": _row(0.8, 0.4, 200.0),
        },
        "transforms": {
            "thick": {
                "optimize": {"measured_success": thick[0], "unrequested_preserved": thick[1]},
                "baseline": {
                    "measured_success": baseline[0],
                    "unrequested_preserved": baseline[1],
                },
            },
            "top_heavy": {"optimize": {"measured_success": 0.5, "unrequested_preserved": 0.5}},
        },
    }


def test_quality_goals_verdicts():
    goals = quality_goals(_metrics())
    assert all(g["met"] for g in goals.values()), goals
    assert "transform_top_heavy_success" not in goals  # no baseline for a zero-shot edit
    assert "chance 0.100" in goals["actor_digit_identity"]["target"]
    # each goal fails on its own when its figure misses
    assert not quality_goals(_metrics(actor_identity=IDENTITY_TARGET - 0.001))[
        "actor_digit_identity"
    ]["met"]
    missed = quality_goals(_metrics(optimize_fcd=FCD_RATIO_TARGET * 700.0 + 1))
    assert not missed["optimize_fcd"]["met"] and missed["actor_fcd"]["met"]
    below_baseline = quality_goals(_metrics(thick=(0.92, 0.6), baseline=(0.93, 0.5)))
    assert not below_baseline["transform_thick_success"]["met"]
    under_90 = quality_goals(_metrics(thick=(0.89, 0.6), baseline=(0.5, 0.5)))
    assert not under_90["transform_thick_success"]["met"]
    less_kept = quality_goals(_metrics(thick=(0.95, 0.4), baseline=(0.5, 0.5)))
    assert not less_kept["transform_thick_preserved"]["met"]
    worse_rows = _metrics()
    worse_rows["conditional"]["optimize"]["row_accuracy"] = 0.59  # below reconstructions' 0.6
    assert not quality_goals(worse_rows)["optimize_all_attributes_right"]["met"]


def test_seed_summary_mean_and_spread(tmp_path):
    per_seed = {}
    for seed, identity in ((0, 0.90), (1, 0.94), (2, 0.98)):
        m = _metrics(actor_identity=identity)
        m["goals"] = quality_goals(m)
        m["conditional_info"] = {"split": "test", "rows": 500}
        per_seed[seed] = m
    s = summarize_seeds(per_seed)
    actor = s["figures"]["actor"]["identity"]
    assert actor["values"] == [0.90, 0.94, 0.98]
    assert math.isclose(actor["mean"], 0.94) and math.isclose(actor["sd"], 0.04)
    assert math.isclose(
        s["figures"]["transform/thick/optimize"]["success"]["sd"], 0.0, abs_tol=1e-12
    )
    assert s["goals"]["actor_digit_identity"] == {
        "met": 1,  # only 0.98 reaches 0.97
        "of": 3,
        "values": [0.90, 0.94, 0.98],
        "target": per_seed[0]["goals"]["actor_digit_identity"]["target"],
    }
    text = render_seeds(s)
    assert "94.0% ± 4.0" in text and "| actor digit identity |" in text and "1 of 3" in text
    assert set(headline_figures(per_seed[0])) >= {"actor", "optimize", "transform/thick/baseline"}
    with pytest.raises(ValueError, match="at least one seed"):
        summarize_seeds({})

    calls = []

    def fake_demo(out, *, seed, **kwargs):
        calls.append((out.name, seed, kwargs))
        return per_seed[seed]

    summary = run_seeds(tmp_path / "runs", [0, 1, 2], run_one=fake_demo, split="test")
    assert [c[:2] for c in calls] == [("seed-0", 0), ("seed-1", 1), ("seed-2", 2)]
    assert calls[0][2] == {"split": "test"}
    assert json.loads((tmp_path / "runs" / "seeds.json").read_text()) == json.loads(
        json.dumps(summary)
    )
    assert (tmp_path / "runs" / "seeds.md").read_text() == render_seeds(summary)
    for bad in ([], [1, 1], [-1]):
        with pytest.raises(ValueError, match="distinct non-negative"):
            run_seeds(tmp_path / "bad", bad, run_one=fake_demo)


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("honest")
    out, cache = root / "out", root / "cache"
    n = torch.get_num_threads()
    try:
        rc = main(
            [
                "demo",
                "--fast",
                "--split",
                "validation",
                "--out",
                str(out),
                "--cache-dir",
                str(cache),
                "--no-progress",
            ]
        )
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    return out


def test_demo_reports_the_split_it_measured(fast_run, capsys):
    m = json.loads((fast_run / "metrics.json").read_text())
    assert m["conditional_info"]["split"] == "validation"
    assert m["command"].endswith("--split validation")
    assert "**validation split**" in (fast_run / "report.md").read_text()
    table = summary_table(m)
    assert "targets of the validation split" in table and "identity" in table.splitlines()[1]
    assert "cvae" in table  # the conditional models' rows beside the method's
    for name in ("actor_digit_identity", "optimize_fcd", "transform_thick_success"):
        assert isinstance(m["goals"][name]["met"], bool)


def test_tuning_scores_candidates_on_the_validation_split(fast_run, capsys):
    run = load_run(fast_run)
    result = tune(
        run,
        generation={"prior": {"start": "latents"}, "actor": {"start": "actor", "w_dist": 0.01}},
        transforms={"actor": {"start": "actor"}},
        rows=24,
    )
    assert result["split"] == "validation" and result["rows"] == 24
    assert list(result["generation"]) == [ACTOR_ROW, "prior", "actor"]
    assert result["generation"][ACTOR_ROW]["overrides"] is None
    prior, actor = result["generation"]["prior"], result["generation"]["actor"]
    for g in (prior, actor):
        assert 0.0 <= g["identity"] <= 1.0 and 0.0 <= g["all_right"] <= 1.0 and g["fcd"] >= 0
    assert actor["overrides"] == {"start": "actor", "w_dist": 0.01}
    assert prior["fcd"] != actor["fcd"]  # the settings reached the optimizer
    assert set(result["transforms"]) == {"baseline", "actor"}
    assert set(result["transforms"]["actor"]) <= {"thick", "thin"}
    text = render_tuning(result)
    assert "| prior |" in text and "| baseline |" in text
    with pytest.raises(ValueError, match="start must be one of"):
        tune(run, generation={"bad": {"start": "nowhere"}}, transforms={}, rows=4)
    with pytest.raises(SystemExit):
        tuning_main([str(fast_run), "--rows", "0"])
    assert "--rows must be at least 1" in capsys.readouterr().err
