"""Light-R1 splits on a real DuckDB store: the selection rules, lineage, and the Dagster assets.

The world (tests/splits_world.py) writes every stage table through the real Store and
schema; each named problem exercises one rule of r1_assets/splits.py.
"""

from __future__ import annotations

import copy
import json

import dagster as dg
import polars as pl
import pytest
import yaml

from dagster_project.assets import splits as split_assets
from dagster_project.resources import R1Resource
from r1_assets.config import ConfigError, parse_config
from r1_assets.splits import SplitError, build_split
from r1_assets.storage import Store, quote_ident
from tests.splits_world import (
    SMALL,
    WORLD_CONFIG,
    bulk_problems,
    named_problems,
    populate_world,
)


def _config(tmp_path, **splits):
    raw = copy.deepcopy(WORLD_CONFIG)
    raw["splits"].update(splits)
    return parse_config(raw, tmp_path)


def _rows(store: Store, split: str) -> pl.DataFrame:
    return store.query(f"SELECT * FROM {quote_ident(split)} ORDER BY problem_id")


def _ids(store: Store, split: str) -> set[str]:
    return set(_rows(store, split)["problem_id"].to_list())


def test_stage1_applies_every_rule(splits_world, tmp_path):
    store, p = splits_world
    selection = build_split(store, _config(tmp_path), "stage1_sft", "run-1")
    assert _ids(store, "stage1_sft") == {p[k].problem_id for k in ("mixed", "all_correct", "strong_easy", "no_strong")}
    # Every clean problem gets exactly one outcome; the contaminated one is not an input at all.
    counts = selection.outcome_counts()
    assert counts == {"too_easy": 1, "unscored": 2, "not_distilled": 1, "no_correct_sample": 1,
                      "no_complete_correct_sample": 2, "selected": 4}
    assert sum(counts.values()) == store.count("clean_problems")

    mixed = _rows(store, "stage1_sft").filter(pl.col("problem_id") == p["mixed"].problem_id).row(0, named=True)
    # Pooled over two sampling settings and two shards: (1 + 3) / (8 + 8).
    assert mixed["pass_rate"] == pytest.approx(0.25)
    assert mixed["difficulty_band"] == "[0.25,0.5)"
    assert (mixed["n_samples"], mixed["n_correct"], mixed["n_wrong"]) == (4, 2, 1)
    assert mixed["run_id"] == "run-1"


def test_stage1_rows_are_chat_messages_of_the_shortest_correct_complete_sample(splits_world, tmp_path):
    store, p = splits_world
    build_split(store, _config(tmp_path), "stage1_sft", "run-1")
    row = store.query(
        "SELECT s.messages, s.n_tokens, d.reasoning, d.final_answer, d.sample_idx, v.correct "
        "FROM stage1_sft s JOIN distillations d USING (generation_id) JOIN verified_distillations v USING (generation_id) "
        "WHERE s.problem_id = $problem_id", {"problem_id": p["mixed"].problem_id}
    ).row(0, named=True)
    # mixed: correct samples of 300 and 120 tokens, a wrong one of 200, an undecided one of 90.
    assert (row["n_tokens"], row["sample_idx"], row["correct"]) == (120, 1, True)
    messages = json.loads(row["messages"])
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == p["mixed"].text
    assert messages[1]["content"] == f"<think>\n{row['reasoning'].strip()}\n</think>\n\n{row['final_answer']}"


def test_random_choice_is_seeded_and_reproducible(tmp_path):
    store = Store(tmp_path / "home")
    populate_world(store, bulk_problems(40))
    chosen = {}
    for seed in (1, 1, 2):
        build_split(store, _config(tmp_path, choice="random", seed=seed), "stage1_sft", f"run-{seed}")
        chosen.setdefault(seed, []).append(dict(_rows(store, "stage1_sft").select("problem_id", "generation_id").iter_rows()))
    assert chosen[1][0] == chosen[1][1]
    assert chosen[1][0] != chosen[2][0]
    assert chosen[1][0].keys() == chosen[2][0].keys()  # same problems, other samples
    # A random choice is still a verified correct complete sample.
    bad = store.query("SELECT count(*) AS n FROM stage1_sft s JOIN verified_distillations v USING (generation_id) "
                      "WHERE NOT v.correct OR NOT v.format_ok")["n"][0]
    assert bad == 0


def test_caps_per_source_and_band(tmp_path):
    store = Store(tmp_path / "home")
    populate_world(store, bulk_problems(60))
    build_split(store, _config(tmp_path), "stage1_sft", "uncapped")
    uncapped = _rows(store, "stage1_sft")
    assert uncapped.height == 60

    sel = build_split(store, _config(tmp_path, max_per_source=15), "stage1_sft", "by-source")
    by_source = dict(_rows(store, "stage1_sft").group_by("source").len().iter_rows())
    assert by_source == {"gsm": 15, "math": 15}
    assert sel.outcome_counts()["capped_by_source"] == 30

    sel = build_split(store, _config(tmp_path, max_per_band=10), "stage1_sft", "by-band")
    by_band = dict(_rows(store, "stage1_sft").group_by("difficulty_band").len().iter_rows())
    assert by_band == {"[0,0.25)": 10, "[0.25,0.5)": 10}
    assert sel.outcome_counts()["capped_by_band"] == 40

    # Re-running the same caps keeps the same problems (seeded-hash order, not table order).
    first = _ids(store, "stage1_sft")
    build_split(store, _config(tmp_path, max_per_band=10), "stage1_sft", "by-band-again")
    assert _ids(store, "stage1_sft") == first


def test_stage2_keeps_hard_problems_with_mixed_teacher_samples(splits_world, tmp_path):
    store, p = splits_world
    build_split(store, _config(tmp_path), "stage1_sft", "run-1")
    sel = build_split(store, _config(tmp_path), "stage2_sft", "run-2")
    rows = _rows(store, "stage2_sft")
    assert set(rows["problem_id"]) == {p["mixed"].problem_id}
    assert sel.outcome_counts() == {"selected": 1, "teacher_all_correct": 1, "too_easy_stage2": 1, "unscored_stage2": 1}
    s1 = _rows(store, "stage1_sft").filter(pl.col("problem_id") == p["mixed"].problem_id)
    assert rows["generation_id"][0] == s1["generation_id"][0]
    assert rows["messages"][0] == s1["messages"][0]
    assert rows["stage2_pass_rate"][0] == pytest.approx(1 / 8)


def test_stage2_names_a_model_without_pass_rates(splits_world, tmp_path):
    store, _ = splits_world
    build_split(store, _config(tmp_path), "stage1_sft", "run-1")
    with pytest.raises(SplitError, match=r"splits.stage2_model 'ghost'.*models present: \['small_model', 'strong_model'\]"):
        build_split(store, _config(tmp_path, stage2_model="ghost"), "stage2_sft", "run-2")


def test_unknown_split_and_bad_config_are_clear_errors(splits_world, tmp_path):
    store, _ = splits_world
    with pytest.raises(ConfigError, match="unknown split 'stage3_sft'"):
        build_split(store, _config(tmp_path), "stage3_sft", "run")
    with pytest.raises(ConfigError, match="splits: unknown key 'alfa'"):
        _config(tmp_path, alfa=0.3)
    with pytest.raises(ConfigError, match="band_edges must increase"):
        _config(tmp_path, band_edges=[0, 0.5, 0.4, 1])


def test_lineage_records_the_selection_params(splits_world, tmp_path):
    store, _ = splits_world
    build_split(store, _config(tmp_path, alpha=0.3, max_per_source=5), "stage1_sft", "run-lin")
    row = store.query("SELECT * FROM lineage WHERE table_name = 'stage1_sft' AND run_id = 'run-lin'").row(0, named=True)
    params = json.loads(row["params"])
    assert params["alpha"] == 0.3 and params["max_per_source"] == 5 and params["choice"] == "shortest"
    assert params["difficulty_model_ids"] == ["small", SMALL]
    assert params["outcomes"]["selected"] == row["row_count"]
    assert len(params["params_hash"]) > 8
    inputs = {i["table"]: i["row_count"] for i in json.loads(row["inputs"])}
    assert inputs == {"clean_problems": store.count("clean_problems"), "pass_rates": store.count("pass_rates"),
                      "distillations": store.count("distillations"),
                      "verified_distillations": store.count("verified_distillations")}


# -- through Dagster ---------------------------------------------------------------------------


def _materialize(home, config_path, selection):
    assets = [split_assets.stage1_sft, split_assets.stage2_sft, split_assets.split_exports, split_assets.curation_report]
    checks = [split_assets.stage1_sft_rows_are_verified, split_assets.stage2_sft_rows_are_verified]
    return dg.materialize(
        [*assets, *checks],
        selection=selection,
        resources={"r1": R1Resource(home=str(home), config_path=str(config_path))},
        raise_on_error=True,
    )


def _write(tmp_path, name, **splits):
    raw = copy.deepcopy(WORLD_CONFIG)
    raw["splits"].update(splits)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_changing_alpha_and_rematerializing_gives_a_new_reproducible_split(r1_home, tmp_path):
    store = Store(r1_home)
    p = populate_world(store, named_problems() + bulk_problems(12))
    strict = _write(tmp_path, "strict.yaml", alpha=0.2)  # pass rate < 0.2: 0 or 1 of 8
    loose = _write(tmp_path, "loose.yaml", alpha=0.5)

    def run(path):
        result = _materialize(r1_home, path, ["stage1_sft", "stage2_sft"])
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        md = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
        return _rows(store, "stage1_sft").drop("run_id"), md

    strict_a, md = run(strict)
    assert md["stage1_sft"]["selection_params"].data["alpha"] == 0.2
    assert (strict_a["pass_rate"] < 0.2).all()
    loose_rows, md_loose = run(loose)
    assert md_loose["stage1_sft"]["selection_params"].data["alpha"] == 0.5
    assert md_loose["stage1_sft"]["params_hash"].text != md["stage1_sft"]["params_hash"].text
    assert set(strict_a["problem_id"]) < set(loose_rows["problem_id"])
    assert p["mixed"].problem_id in set(loose_rows["problem_id"]) - set(strict_a["problem_id"])
    strict_b, _ = run(strict)
    assert strict_b.equals(strict_a)  # same tables + same params = same rows

    # Lineage holds one stage1 row per run, each with its alpha.
    alphas = store.query("SELECT (params->>'alpha')::DOUBLE AS a FROM lineage WHERE table_name = 'stage1_sft' "
                         "ORDER BY created_at")["a"].to_list()
    assert alphas == [0.2, 0.5, 0.2]


def test_split_assets_attach_charts_and_tables(r1_home, tmp_path):
    store = Store(r1_home)
    populate_world(store, named_problems() + bulk_problems(12))
    config = _write(tmp_path, "r1.yaml")
    result = _materialize(r1_home, config, ["stage1_sft", "stage2_sft", "curation_report", "split_exports"])
    md = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    s1 = md["stage1_sft"]
    assert s1["dagster/row_count"].value == store.count("stage1_sft") == 16
    for chart in ("token_lengths_chart", "difficulty_chart", "outcomes_chart"):
        assert s1[chart].value.startswith(f"![{chart[:-6]}](data:image/png;base64,iVBOR")  # a PNG
    assert "| selected |" in s1["outcomes"].value and "| too_easy |" in s1["outcomes"].value
    report = md["curation_report"]
    for chart in ("funnel_chart", "pass_rate_chart", "token_length_chart"):
        assert "data:image/png;base64,iVBOR" in report[chart].value
    assert "| stage1_sft | 16 |" in report["yield_funnel"].value
    assert "math500" in report["contamination"].value
    exports = md["split_exports"]
    for split in ("stage1_sft", "stage2_sft"):
        assert exports[f"{split}_path"].path == str(r1_home / "exports" / split)
        assert exports[f"{split}_manifest"].data["rows"] == store.count(split)
        assert pl.read_parquet(r1_home / "exports" / split / f"{split}.parquet").height == store.count(split)


def test_an_empty_split_still_materializes_exports_and_charts(r1_home, tmp_path):
    store = Store(r1_home)
    populate_world(store)
    config = _write(tmp_path, "none.yaml", alpha=0.0)  # pass rate < 0: nothing qualifies
    result = _materialize(r1_home, config, ["stage1_sft", "stage2_sft", "split_exports", "curation_report"])
    assert result.success
    md = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert md["stage1_sft"]["dagster/row_count"].value == 0 == md["stage2_sft"]["dagster/row_count"].value
    assert "data:image/png;base64," in md["stage1_sft"]["token_lengths_chart"].value
    assert pl.read_parquet(r1_home / "exports" / "stage1_sft" / "stage1_sft.parquet").height == 0
    import datasets

    assert datasets.load_from_disk(str(r1_home / "exports" / "stage2_sft" / "hf"))["train"].num_rows == 0
