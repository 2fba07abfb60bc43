"""Each stage name runs its own stage: the nightly order and the dispatch table are kept apart."""

from __future__ import annotations

from batchml import stages


def test_every_stage_name_runs_its_own_function():
    assert set(stages.STAGES) == set(stages.NIGHTLY_STAGES + stages.TRAINING_STAGES)
    for name, run in stages.STAGES.items():
        assert run.__name__ == "_" + name.replace("-", "_"), (name, run.__name__)
