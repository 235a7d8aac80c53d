from __future__ import annotations

import csv

import pytest

from mixsup.cli import main
from mixsup.config import load_config
from mixsup.evaluate.thresholds import RULES
from mixsup.experiment.core import grid_variants, parse_ablation
from mixsup.experiment.pairs import pairs
from tests.helpers import FAST


def test_parse_ablation():
    v = parse_ablation("pixel-labels=200,50")
    assert [x.overrides for x in v] == [("subset.max_fine_patches=200",),
                                        ("subset.max_fine_patches=50",)]
    with pytest.raises(ValueError):
        parse_ablation("bogus=1")
    budget = parse_ablation("pixel-slides=6,1", ("mixed", "pixel", "image"))
    assert [x.name for x in budget] == ["mixed pixel-slides=6", "pixel pixel-slides=6",
                                        "mixed pixel-slides=1", "pixel pixel-slides=1"]
    assert budget[1].mode == "pixel" and budget[1].overrides == ("subset.pixel_slides=6",)
    drawn = parse_ablation("fine-tumour=0.25", ("mixed", "pixel"))
    assert [(x.name, x.overrides) for x in drawn] == [
        ("mixed fine-tumour=0.25", ("stage1.fine_tumour_share=0.25",)),
        ("pixel fine-tumour=0.25", ("stage1.fine_tumour_share=0.25",))]
    short = parse_ablation("stage2-epochs=5", ("mixed", "pixel", "image"))
    assert [(x.name, x.overrides) for x in short] == [
        ("mixed stage2-epochs=5", ("stage2.epochs=5",)),
        ("pixel stage2-epochs=5", ("stage2.epochs=5",))]
    ratio = parse_ablation("em-ratio=2-3-5,2-1-7", ("mixed", "pixel"))
    assert [(x.name, x.overrides) for x in ratio] == [
        ("mixed em-ratio=2-3-5", ("stage1.ratio=[2,3,5]",)),
        ("mixed em-ratio=2-1-7", ("stage1.ratio=[2,1,7]",))]
    assert load_config("small", overrides=ratio[0].overrides).stage1.ratio == (2, 3, 5)


@pytest.mark.parametrize("shares", ["0.5,0.5", "a,b,c", "0.5,0.2,0.2", "1.5,-0.5,0"])
def test_synth_refuses_split_shares_that_are_not_three_summing_to_one(shares, tmp_path,
                                                                       capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["synth", str(tmp_path / "d"), "--split-shares", shares])
    assert exit_.value.code == 2 and "--split-shares" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_a_run_folder_linked_to_nothing_is_refused_before_any_run(shapes_data, tmp_path,
                                                                   capsys):
    runs = tmp_path / "e" / "runs"
    runs.mkdir(parents=True)
    (runs / "pixel_seed0").symlink_to(tmp_path / "gone")
    assert main(["experiment", str(shapes_data), "--out", str(tmp_path / "e"), "--modes",
                 "pixel", "--preset", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "link to nothing" in err and "pixel_seed0" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["runs"]


def test_a_run_started_with_other_settings_is_refused_before_any_run(shapes_data, tmp_path,
                                                                     capsys):
    from mixsup.config import load_config
    from mixsup.config.run import create_run

    train = tmp_path / "e" / "runs" / "pixel_seed0" / "train"
    create_run(train, load_config("tiny", overrides=["seed=0"]))  # as a first experiment did
    argv = ["experiment", str(shapes_data), "--out", str(tmp_path / "e"), "--modes", "pixel",
            "--preset", "tiny", "--set", "runtime.num_workers=0"]  # the device's own: no change
    # a rerun with another setting would report the old runs under it
    assert main([*argv, "--set", "stain.normalise=macenko"]) == 2
    err = capsys.readouterr().err
    assert "other stain settings" in err and str(train / "config.yaml") in err
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["runs"]
    assert sorted(p.name for p in train.iterdir()) == ["config.yaml"]


def test_no_base_without_an_ablation_is_refused(tmp_path, capsys):
    assert main(["experiment", str(tmp_path), "--out", str(tmp_path / "e"), "--no-base"]) == 2
    assert "--no-base" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_stage2_without_epochs_needs_a_rule_that_has_a_value():
    from mixsup.config import load_config
    from mixsup.errors import ConfigError

    with pytest.raises(ConfigError, match="no training curve"):
        load_config("small", overrides=["stage2.epochs=0", "stage2.select_by=train_curve"])
    for rule in ("train_loss", "val"):  # θ2's loss after training is measured at 0 epochs too
        cfg = load_config("small", overrides=["stage2.epochs=0", f"stage2.select_by={rule}"])
        assert cfg.stage2.epochs == 0


def test_grid_variants_with_and_without_the_plain_runs():
    both = grid_variants(("mixed", "pixel"), ("pixel-slides=1",))
    assert [v.name for v in both] == ["mixed", "pixel", "mixed pixel-slides=1",
                                      "pixel pixel-slides=1"]
    only = grid_variants(("mixed", "pixel"), ("pixel-slides=1",), base=False)
    assert [v.name for v in only] == ["mixed pixel-slides=1", "pixel pixel-slides=1"]
    with pytest.raises(ValueError, match="--no-base"):
        grid_variants(("mixed",), (), base=False)


def test_an_external_test_set_needs_labelled_test_slides(tmp_path):
    from mixsup.errors import MixsupError
    from mixsup.experiment.core import HeldOut
    from mixsup.synth.shapes import make_shapes

    train_only = make_shapes(tmp_path / "t", n_slides=2, size=256, progress=False,
                             splits=(1, 0, 0)).resolve()
    with pytest.raises(MixsupError, match="labelled test slides of both classes") as err:
        HeldOut.of(tmp_path / "elsewhere", train_only)
    assert str(train_only / "slides.csv") in str(err.value)


def test_pairs_compare_modes_within_one_setting():
    got = pairs(["image", "pixel", "mixed", "mixed pixel-slides=1", "pixel pixel-slides=1"])
    assert got == [("mixed", "pixel"), ("mixed", "image"), ("pixel", "image"),
                   ("mixed pixel-slides=1", "pixel pixel-slides=1"),
                   ("mixed pixel-slides=1", "mixed"), ("pixel pixel-slides=1", "pixel")]


@pytest.mark.slow
def test_experiment_writes_every_mode(shapes_data, tmp_path):
    out = tmp_path / "exp"
    args = ["-q", "experiment", str(shapes_data), "--out", str(out), "--per-center",
            "--ablate", "slides=0.5", "--preset", "tiny"]
    for item in [*FAST, "stage1.rounds=1", "mil.epochs=1", "mil.batch_size=8"]:
        args += ["--set", item]
    assert main(args) == 0
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    overall = {r["mode"] for r in rows if r["center"] == "all"}
    assert overall == {"mixed", "pixel", "image", "abmil", "mixed slides=0.5"}
    assert any(r["center"] != "all" for r in rows)
    for r in rows:
        assert "specificity_at_full_sensitivity" in r and "auc" in r
    for f in ("results.md", "roc.png", "heatmaps.png"):
        assert (out / f).is_file()
    with open(out / "runs.csv") as fh:
        runs = {r["mode"]: r for r in csv.DictReader(fh)}
    assert runs["pixel"]["selected_round"] == "1" and runs["image"]["selected_round"] == ""
    assert runs["mixed"]["selected_round"] == "1"  # rounds 1..N only, and N = 1
    assert float(runs["mixed"]["train_seconds"]) > 0
    md = (out / "results.md").read_text()
    assert "selected round" in md and "θ1 alone" in md
    # the shapes fixture's test split is one slide: no AUC, so no pair, and the table says so
    assert "Paired differences: none" in md and (out / "paired.csv").is_file()
    assert "theta1_auc" in runs["mixed"]
    # attention weights are no probabilities: abmil has no θ1-alone score
    assert runs["abmil"]["theta1_auc"] == "nan" and runs["abmil"]["selected_round"] == ""
    assert len(list((out / "features").iterdir())) == 1  # one shared cache per encoder
    # every rule applied to the val scores behind each bundle: "lowest" is the bundle's own
    with open(out / "thresholds.csv") as fh:
        points = list(csv.DictReader(fh))
    stored = {r["mode"]: float(r["operating_threshold"]) for r in rows if r["center"] == "all"}
    lowest = {p["mode"]: float(p["threshold"]) for p in points if p["rule"] == "lowest"}
    assert lowest and all(lowest[m] == pytest.approx(stored[m], rel=1e-5) for m in lowest)
    assert {p["rule"] for p in points} == set(RULES)
    assert "what it promises" in (out / "thresholds.md").read_text()


METRIC_COLUMNS = ["mode", "seed", "selected_round", "selection_rule", "auc",
                  "specificity_at_full_sensitivity", "sensitivity", "specificity",
                  "tied_fraction"]


@pytest.mark.slow
def test_parallel_runs_give_the_sequential_results(shapes_data, tmp_path):
    """--jobs 2 runs the grid in two child processes: the same runs and the same tables."""
    def experiment(jobs: int) -> tuple[list[dict[str, str]], str]:
        out = tmp_path / f"jobs{jobs}"
        args = ["-q", "experiment", str(shapes_data), "--out", str(out), "--modes", "pixel",
                "--seeds", "0,1", "--preset", "tiny", "--jobs", str(jobs)]
        for item in [*FAST, "stage1.rounds=0"]:  # the cheapest run that goes end to end
            args += ["--set", item]
        assert main(args) == 0
        with open(out / "runs.csv") as fh:
            runs = [{k: r[k] for k in METRIC_COLUMNS} for r in csv.DictReader(fh)]
        return runs, (out / "results.csv").read_text()

    # Each child runs at threads_per_process(2); float sums differ with the thread count, so
    # the sequential run is held to the same count.
    import torch

    from mixsup.runtime.parallel_runs import threads_per_process
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_process(2))
    try:
        sequential = experiment(1)
    finally:
        torch.set_num_threads(threads)
    parallel = experiment(2)
    assert [r["seed"] for r in parallel[0]] == ["0", "1"]
    assert parallel == sequential
    assert (tmp_path / "jobs2" / "runs" / "pixel_seed1" / "experiment.log").is_file()

    # The same runs scored on an external test set: no training, their own prediction folder.
    from mixsup.synth.shapes import make_shapes

    ext = make_shapes(tmp_path / "ext", n_slides=4, size=640, seed=5, progress=False,
                      splits=(0, 0, 1))
    run = tmp_path / "jobs2" / "runs" / "pixel_seed0"
    before = {p: p.stat().st_mtime_ns for p in (run / "train").glob("round_*/**/*.pt")}
    own = (run / "pred" / "predictions.csv").read_text()
    assert main(["-q", "experiment", str(shapes_data), "--out", str(tmp_path / "jobs2"),
                 "--modes", "pixel", "--seeds", "0,1", "--preset", "tiny", "--test-data",
                 str(ext), *[a for item in [*FAST, "stage1.rounds=0"]
                             for a in ("--set", item)]]) == 0
    assert before and {p: p.stat().st_mtime_ns for p in before} == before  # not retrained
    assert (run / "pred" / "predictions.csv").read_text() == own
    scored = (run / "pred-ext" / "predictions.csv").read_text().splitlines()[1:]
    assert sorted(line.split(",")[0] for line in scored) == [f"slide_{i:03d}" for i in range(4)]
    assert (run / "report-ext" / "metrics.json").is_file()
    tables = tmp_path / "jobs2" / "test-ext"
    assert "external test set" in (tables / "results.md").read_text()
    assert {"results.csv", "runs.csv", "paired.csv", "roc.png"} <= {
        p.name for p in tables.iterdir()}
    assert "external" not in (tmp_path / "jobs2" / "results.md").read_text()  # DATA's own


def test_a_ratio_ablation_without_a_set_step_count_is_refused(shapes_data, tmp_path, capsys):
    assert main(["experiment", str(shapes_data), "--out", str(tmp_path / "e"), "--modes",
                 "mixed,pixel", "--preset", "tiny", "--set", "stage1.steps_per_epoch=null",
                 "--ablate", "em-ratio=2-3-5"]) == 2
    err = capsys.readouterr().err
    assert "em-ratio" in err and "stage1.steps_per_epoch" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()


def test_an_ablated_value_that_cannot_train_is_refused_before_any_run(shapes_data, tmp_path,
                                                                      capsys):
    # the plain runs come first in the grid and would pass; the ablated variant would not
    assert main(["experiment", str(shapes_data), "--out", str(tmp_path / "e"), "--modes",
                 "mixed", "--preset", "tiny", "--ablate", "freeze=2"]) == 2
    err = capsys.readouterr().err
    assert "freeze_stages" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--modes", "", "no empty item"), ("--modes", "pixel,,mixed", "no empty item"),
    ("--modes", "abmil,abmil", "more than once"), ("--modes", "nosuch", "unknown mode"),
    ("--seeds", "", "no empty item"), ("--seeds", "0,0", "more than once"),
    ("--seeds", "0,00", "more than once"), ("--seeds", "-1", "from 0 to 2**32-1"),
    ("--seeds", str(2 ** 64), "from 0 to 2**32-1"), ("--seeds", "1.5", "from 0 to 2**32-1"),
    ("--jobs", "0", "--jobs takes an integer"), ("--jobs", "x", "--jobs takes an integer"),
])
def test_experiment_arguments_are_refused_where_they_enter(flag, value, says, tmp_path, capsys):
    """Each a usage error (exit 2) that quotes the flag, before anything is read or written."""
    with pytest.raises(SystemExit) as exc:
        main(["experiment", str(tmp_path / "nodata"), "--out", str(tmp_path / "e"), flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and says in err
    assert not (tmp_path / "e").exists()


def test_rounds_refuses_what_is_not_a_run_and_writes_nothing(shapes_data, tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    assert main(["rounds", str(missing), "--data", str(shapes_data)]) == 2
    assert "not a training run" in capsys.readouterr().err and not missing.exists()
    assert main(["rounds", str(shapes_data), "--data", str(shapes_data)]) == 2
    assert not (shapes_data / "map_quality.json").exists()


@pytest.mark.parametrize("value", ["null", "~", "good.safetensors #x", "a: b", "[1]"])
def test_a_path_or_a_model_name_is_never_read_as_yaml(value):
    from mixsup.cli.training import verbatim

    cfg = load_config("tiny", overrides=[f"abmil.weights={verbatim(value)}",
                                         f"abmil.encoder={verbatim(value)}"])
    assert cfg.abmil.weights == value and cfg.abmil.encoder == value


@pytest.mark.parametrize("flag", ["--weights", "--encoder"])
def test_an_empty_file_or_model_flag_is_a_usage_error(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["features", str(tmp_path), "--out", str(tmp_path / "f"), flag, ""])
    assert exc.value.code == 2 and f"{flag} needs a value" in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_an_experiment_folder_that_cannot_be_made_is_refused_before_any_run(shapes_data,
                                                                           tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file, a_file / "below", "/proc/mixsup-exp"):
        with pytest.raises(SystemExit) as exit_:  # refused while the arguments are read
            main(["experiment", str(shapes_data), "--out", str(out), "--modes", "pixel",
                  "--preset", "tiny"])
        assert exit_.value.code == 2 and "--out" in capsys.readouterr().err
    assert a_file.read_text() == "x"
    with pytest.raises(SystemExit):
        main(["experiment", str(shapes_data), "--out", ""])


def test_a_budget_that_is_no_number_is_refused_before_any_run(shapes_data, tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["experiment", str(shapes_data), "--out", str(out), "--modes", "pixel",
                 "--preset", "tiny", "--ablate", "pixel-slides=true"]) == 2
    assert "boolean is not a number" in capsys.readouterr().err and not out.exists()
