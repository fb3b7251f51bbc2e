"""The MLflow UI over a real (small) study, looked at in headless Chromium (slow; skipped without
Chromium). `python -m tests.ui.screens --sweep --store DIR --out DIR` takes the same pictures of
the full main job."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui.cdp import find_chromium
from tests.ui.screens import capture, run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_chromium() is None, reason="no chromium")]


def test_ui_shows_model_training_view_nested_trials_datasets_and_descriptions(tmp_path: Path) -> None:
    store, out = tmp_path / "store", tmp_path / "shots"
    run_sweep(store, ["--n-trials", "6", "experiment=smoke", "trainer.max_epochs=20",
                      "evaluation.eval_every_n_epochs=10"])
    facts = capture(store, out)
    assert "/runs" in facts.landing_hash and "workflowType=machine_learning" in facts.landing_url
    assert "study-tpe" in facts.landing_text and "Detect Issues" not in facts.landing_text
    assert len(facts.trial_rows) >= 6  # every trial nested under the study parent
    assert any(r.endswith(("-dup-t000", "-pruned")) for r in facts.trial_rows)
    assert "rubber_surrogate" in facts.trial_page_text and "Development" in facts.trial_page_text  # Dataset
    assert "Trial " in facts.trial_page_text and "Optuna study" in facts.parent_page_text  # descriptions
    params = facts.trial_page_text.split("Parameters", 1)[1]
    assert params.index("generator.name") < params.index("seed")  # searched knobs lead the params table
    assert all(Path(s).stat().st_size > 10_000 for s in facts.shots)
