"""The runs-table query language (lcaviz.app.runs_query), pure functions."""

from __future__ import annotations

import pytest

from lcaviz.app.runs_query import (
    QueryError,
    Term,
    config_fields,
    lookup,
    parse_query,
    record_matches,
    term_matches,
    unknown_fields,
)

SGD = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "betas": [0.9, 0.999],
       "per_class": True, "precision_flags": {"matmul": "ieee"}, "lca_layers": None}
SGD0 = {**SGD, "lr": 0.05, "momentum": 0.0}
ADAM = {**SGD, "optimizer": "adam", "lr": 0.001, "momentum": 0.9, "per_class": False}
RUNS = {"sgd": SGD, "sgd0": SGD0, "adam": ADAM}


def select(query: str) -> list[str]:
    terms, words = parse_query(query)
    return sorted(name for name, cfg in RUNS.items()
                  if record_matches(terms, words, {"id": name}, cfg, name))


def test_parse_terms_and_words():
    terms, words = parse_query("optimizer=sgd lr<0.05 momentum > 0 MNIST note~'a b'")
    assert terms == [Term("optimizer", "=", "sgd"), Term("lr", "<", "0.05"),
                     Term("momentum", ">", "0"), Term("note", "~", "a b")]
    assert words == ["mnist"]
    assert parse_query("") == ([], []) and parse_query(None) == ([], [])
    assert parse_query("lr==0.1")[0] == [Term("lr", "=", "0.1")]


def test_the_issue_example():
    assert select("optimizer=sgd lr<0.05 momentum>0") == ["sgd"]
    assert select("optimizer=sgd") == ["sgd", "sgd0"]
    assert select("lr<=0.01") == ["adam", "sgd"] and select("lr>=0.05") == ["sgd0"]
    assert select("optimizer!=sgd") == ["adam"] and select("optimizer=SGD") == ["sgd", "sgd0"]
    assert select("lr=0.01") == ["sgd"] and select("momentum=0") == ["sgd0"]


def test_nested_lists_booleans_and_missing_fields():
    assert select("precision_flags.matmul=ieee") == ["adam", "sgd", "sgd0"]
    assert select("betas.1>0.99") == ["adam", "sgd", "sgd0"] and select("betas.5>0") == []
    assert select("betas=0.9,0.999") == ["adam", "sgd", "sgd0"]
    assert select("per_class=true") == ["sgd", "sgd0"] and select("per_class=false") == ["adam"]
    assert select("lca_layers=none") == [] and select("nosuch=1") == []
    assert select("nosuch!=1") == []  # a run without the field never matches
    assert select("optimizer~ad") == ["adam"]
    assert select("sgd0") == ["sgd0"]  # a plain word searches the text


@pytest.mark.parametrize("query, message", [
    ("lr<<0.05", "two operators"), ("lr<", "has no value"), ("=sgd", "cannot read"),
    ("lr<abc", "< needs a number"), ("note='open", "close the quote"),
    ("1lr=3", "cannot read"),
])
def test_malformed_queries_say_which_term_and_how(query, message):
    with pytest.raises(QueryError, match=message) as info:
        parse_query(query)
    assert "lr" in str(info.value) or "quote" in str(info.value) or "=sgd" in str(info.value)


def test_row_columns_win_over_config():
    row = {"momentum": 0.9}  # the table's momentum column: Adam's beta1
    term = Term("momentum", ">", "0.5")
    assert record_matches([term], [], row, {"momentum": 0.0}, "")
    assert not term_matches(term, {"momentum": 0.0})


def test_lookup_unknown_fields_and_config_fields():
    assert lookup(SGD, "precision_flags.matmul") == "ieee" and lookup(SGD, "betas.0") == 0.9
    terms, _ = parse_query("lr<1 lrr<1")
    assert unknown_fields(terms, [({}, SGD), ({}, ADAM)]) == ["lrr"]
    assert config_fields([SGD, {"extra": 1}]) == sorted(
        ["optimizer", "lr", "momentum", "betas", "per_class", "precision_flags.matmul",
         "lca_layers", "extra"])


# -- the runs page: queries over the sample runs' configs, chosen config columns ------------
def test_runs_page_queries_and_config_columns():
    from pathlib import Path

    from lcaviz.app.pages import runs
    from lcaviz.app.state import AppState

    state = AppState(runs_dir=Path(__file__).resolve().parents[2] / "sample_runs")
    rows = runs.refresh_runs(state, 0, None)[0]
    data, hint, columns, options = runs.table_view(rows, "optimizer=sgd lr<0.05 momentum>0",
                                                   ["weight_decay", "precision_flags.matmul"])
    assert sorted(r["id"] for r in data) == ["lenet_sgd_mom0.9.h5", "mnist_fc_sgd_mom0.9.h5"]
    assert hint.startswith("2 of 5 runs match")
    assert [c["id"] for c in columns][-2:] == ["cfg:weight_decay", "cfg:precision_flags.matmul"]
    lenet = next(r for r in data if r["id"] == "lenet_sgd_mom0.9.h5")
    assert lenet["cfg:weight_decay"] == 0.0 and lenet["cfg:precision_flags.matmul"] == "ieee"
    assert "config" not in lenet  # the table gets cells, not the whole config
    assert {"label": "precision_flags.matmul", "value": "precision_flags.matmul"} in options
    # a field only the config has (the table has no weight_decay column)
    assert [r["id"] for r in runs.table_view(rows, "weight_decay>0.5", [])[0]] == \
        ["grokking_transformer.h5"]
    data, hint, _, _ = runs.table_view(rows, "lr<<0.05", [])
    assert len(data) == 5 and hint.startswith("⚠") and "two operators" in hint
    _, hint, _, _ = runs.table_view(rows, "lrr<0.05", [])
    assert "no run has a field “lrr”" in hint
