"""keep_engines_open: one engine per model settings across open_engine blocks, dropped on failure."""

from __future__ import annotations

import pytest

from r1_assets import engines
from r1_assets.config import ModelConfig
from r1_assets.engines import keep_engines_open, open_engine

SMALL = ModelConfig(name="small_model", enforce_eager=True, max_model_len=2048, batch_size=64)


@pytest.fixture(autouse=True)
def outside_any_block(monkeypatch):
    """Each test starts outside a keep_engines_open block, whatever the test session holds
    (``kept_engines`` keeps one open for the model tests of the same worker)."""
    monkeypatch.setattr(engines, "_kept_engines", None)


def test_engines_are_reused_inside_the_block_and_fresh_outside(tmp_path):
    with open_engine(SMALL, tmp_path) as first, open_engine(SMALL, tmp_path) as second:
        assert first is not second  # no block: every caller gets (and closes) its own
    with keep_engines_open():
        with open_engine(SMALL, tmp_path) as a:
            pass
        # Same settings under another role name (the embedded default's small model and teacher).
        with open_engine(SMALL.model_copy(), tmp_path) as b:
            assert b is a
        with open_engine(SMALL, tmp_path, batch_size=8) as other_batch:
            assert other_batch is not a and other_batch.batch_size == 8
        with open_engine(SMALL.model_copy(update={"max_model_len": 1024}), tmp_path) as other_model:
            assert other_model is not a
        with keep_engines_open(), open_engine(SMALL, tmp_path) as c:  # nested: the outer block's engines
            assert c is a
    with keep_engines_open(), open_engine(SMALL, tmp_path) as d:
        assert d is not a  # the block ended: its engines were closed and forgotten


def test_a_failed_block_drops_its_engine(tmp_path):
    with keep_engines_open():
        with pytest.raises(RuntimeError, match="engine died"), open_engine(SMALL, tmp_path) as broken:
            raise RuntimeError("engine died")
        with open_engine(SMALL, tmp_path) as fresh:
            assert fresh is not broken


def test_homes_linking_one_converted_model_share_its_engine(tmp_path):
    """What decides an in-process engine is the model folder it loads, not the home naming it."""
    from r1_assets.small_model import MANIFEST, small_model_dir

    folder = small_model_dir(tmp_path / "one")
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text("{}")
    other = small_model_dir(tmp_path / "two")
    other.parent.mkdir(parents=True)
    other.symlink_to(folder, target_is_directory=True)
    with keep_engines_open():
        with open_engine(SMALL, tmp_path / "one") as a, open_engine(SMALL, tmp_path / "two") as b:
            assert a is b
        with open_engine(SMALL, tmp_path / "unconverted") as c:
            assert c is not a
