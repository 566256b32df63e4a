"""A tune search says what its best trial shows on the validation complexes: whether it beats
predicting the training labels' mean, and whether the validation set can tell it from the other
trials; it names no winner where it cannot. The quick preset's synthetic data is learnable within
its budget."""

from __future__ import annotations

import math

import pytest
import torch

from model import TrainConfig, run_training
from model._train import Scores
from stagetune_api import EpochReport, TrainedReport, TrialRecord
from tuner import build_job_spec, train_config
from tuner._tune import TuneOutcome, tune_verdict


def test_scores_count_each_complex_and_the_mean_label_baseline():
    target = torch.tensor([5.0, 6.0, 7.0, 8.0])
    perfect = Scores.of(target.clone(), target, label_mean=6.5)
    assert perfect.loss == 0 and perfect.pearson == pytest.approx(1.0)
    assert perfect.baseline_loss == pytest.approx(1.25)  # (1.5² + 0.5² + 0.5² + 1.5²) / 4
    assert perfect.gain_se == pytest.approx(float(torch.tensor([2.25, 0.25, 0.25, 2.25]).std() / 2))
    the_mean = Scores.of(torch.full((4,), 6.5), target, label_mean=6.5)
    assert the_mean.loss == the_mean.baseline_loss and the_mean.gain_se == 0
    one = Scores.of(torch.tensor([1.0]), torch.tensor([2.0]), label_mean=0.0)
    assert one.loss_se is None and one.gain_se is None and one.complexes == 1


def _trial(i: int, loss: float, se: float, baseline: float = 1.0, gain_se: float = 0.05):
    last = EpochReport(
        epoch=3,
        val_loss=loss,
        val_loss_se=se,
        val_baseline_loss=baseline,
        val_gain_se=gain_se,
        val_complexes=50,
    )
    record = TrialRecord(
        stage="validation",
        search="tune",
        trial_id=f"t{i}",
        status="completed",
        variables={},
        trained=TrainedReport(last=last),
    )
    return record, last


def _outcome(*trials) -> TuneOutcome:
    records = [r for r, _ in trials]
    best = min((e for _, e in trials), key=lambda e: e.val_loss)
    metrics = {**best.model_dump(), "training_iteration": best.epoch}
    return TuneOutcome({"pair": "adamw/cosine"}, metrics, len(records), 0, records)


def test_a_best_trial_that_does_not_beat_the_mean_is_no_winner():
    verdict = tune_verdict(_outcome(_trial(0, 0.95, 0.1), _trial(1, 0.99, 0.1)))
    assert verdict.verdict == "no_better_than_mean"  # a gain of 0.05, within 1.96 x 0.05
    assert verdict.words.startswith("no winner") and "50 validation complexes" in verdict.words


def test_trials_the_validation_set_cannot_tell_apart_are_no_winner():
    close = _outcome(_trial(0, 0.60, 0.05), _trial(1, 0.65, 0.05), _trial(2, 0.95, 0.05))
    verdict = tune_verdict(close)
    assert verdict.verdict == "indistinguishable" and verdict.tied == 1  # 0.65, not 0.95
    assert "1 other trial(s)" in verdict.words
    clear = tune_verdict(_outcome(_trial(0, 0.40, 0.05), _trial(1, 0.65, 0.05)))
    assert clear.verdict == "learned" and clear.tied == 0
    assert "stopped early" not in clear.words


def test_a_lower_loss_of_a_trial_stopped_early_is_said_beside_the_chosen_one():
    """The answer prefers a trial that ran every epoch: one ASHA stopped with a clearly lower
    loss is named, not hidden behind "better than every other trial"."""
    chosen, _ = _trial(0, 0.40, 0.02)
    stopped, _ = _trial(1, 0.20, 0.02)
    metrics = {**chosen.trained.last.model_dump(), "training_iteration": 3}
    outcome = TuneOutcome({"pair": "adamw/cosine"}, metrics, 2, 1, [chosen, stopped])
    verdict = tune_verdict(outcome)
    assert verdict.verdict == "learned" and "1 trial(s) ASHA stopped early" in verdict.words


def test_a_search_saved_before_trials_reported_their_errors_has_no_verdict():
    old = TuneOutcome({"pair": "x"}, {"val_loss": 0.5, "training_iteration": 2}, 1, 0, [])
    assert tune_verdict(old) is None
    assert tune_verdict(TuneOutcome(None, None, 0, 0, [])) is None


def test_the_quick_presets_data_is_learnable_within_its_budget(tmp_path):
    """The quick preset's smallest model, at the preset's epochs and the largest learning rate
    its tune search tries, beats predicting the mean on its synthetic complexes."""
    spec = build_job_spec({"preset": "quick", "job_id": "learnable"})
    tree = train_config(spec).to_dict()
    tree["model"].update(hidden_channels=8, num_layers=1, num_rbf=8)
    tree["optimizer"]["lr"] *= 5.0  # the top of the tune search's lr_factor range
    tree["train"].update(
        epochs=spec.max_epochs, max_atoms_per_batch=2560, output_dir=str(tmp_path / "runs")
    )
    last = run_training(TrainConfig.model_validate(tree)).epochs[-1]
    gain = last.val_baseline_loss - last.val_loss
    assert gain > 1.96 * last.val_gain_se, (last.val_loss, last.val_baseline_loss)
    assert last.val_pearson > 0.2 and math.isfinite(last.val_loss)
