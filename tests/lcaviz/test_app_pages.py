"""Error pages, the runs table and the compare page (issue 14, items 8, 9 and 10), through
the pages' plain functions and one real Flask request."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import dash
import pytest

from lcaviz.app import create_app, get_state, ids
from lcaviz.app.pages import compare, run_exports, runs
from tests.e2e.runs_fixture import make_runs_dir

SAMPLE = Path(__file__).resolve().parents[2] / "sample_runs"
LENET, FC = "lenet_sgd_mom0.9.h5", "mnist_fc_sgd_mom0.9.h5"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(make_runs_dir(tmp_path_factory.mktemp("pages")))


@pytest.fixture(scope="module")
def sample():
    return get_state(create_app(SAMPLE))


def find(component, pred) -> list:
    """Every component of a layout tree for which ``pred`` holds."""
    out, stack = [], [component]
    while stack:
        c = stack.pop()
        if c is None or isinstance(c, (str, int, float)):
            continue
        if isinstance(c, (list, tuple)):
            stack.extend(c)
            continue
        if pred(c):
            out.append(c)
        stack.append(getattr(c, "children", None))
    return out


def export_graphs(layout) -> set[str]:
    return {c.id["graph"] for c in find(layout, lambda c: isinstance(getattr(c, "id", None), dict)
                                        and c.id.get("type") == ids.EXPORT)}


# -- item 8: error pages ----------------------------------------------------------------------
def control_values(run_id: str) -> list:
    values = [None] * len(run_exports.CONTROL_STATES)
    values[[n for n, _, _ in run_exports.CONTROL_STATES].index("run_id")] = run_id
    return values


def test_report_of_an_unreadable_run_is_not_a_server_error(app):
    client = app.server.test_client()
    body = {"output": f"{ids.REPORT_DOWNLOAD}.data",
            "outputs": {"id": ids.REPORT_DOWNLOAD, "property": "data"},
            "inputs": [{"id": ids.REPORT_BTN, "property": "n_clicks", "value": 1}],
            "state": [{"id": cid, "property": prop, "value": v} for (_, cid, prop), v in
                      zip(run_exports.CONTROL_STATES, control_values("corrupt.h5"),
                          strict=True)],
            "changedPropIds": [f"{ids.REPORT_BTN}.n_clicks"]}
    r = client.post("/_dash-update-component", json=body)
    assert r.status_code in (200, 204), r.get_data(as_text=True)[:300]  # was 500 + traceback
    state = get_state(app)
    for rid in ("corrupt.h5", "", "../outside.h5"):
        assert run_exports.report(state, control_values(rid)) is dash.no_update


def test_report_button_only_shows_for_an_open_run():
    assert run_exports.report_button(None)[0] == {"display": "none"}
    assert run_exports.report_button({"R": 3, "T": 3})[0] == {}


def test_compare_without_runs_shows_the_error_and_no_axes(app):
    state = get_state(app)
    for rids in ([], ["fc.h5"], ["fc.h5", "corrupt.h5"]):
        cards, opts, value, style = compare.page_state(state, rids)
        assert cards and style == {"display": "none"}, rids
    assert compare.page_state(state, ["fc.h5", "fc_seed3.h5"])[3] == {}
    body = find(compare.layout(), lambda c: getattr(c, "id", None) == ids.CMP_BODY)
    assert body and body[0].style == {"display": "none"}  # hidden before any callback runs


# -- item 9: runs page ----------------------------------------------------------------------------
def test_runs_table_links_names_and_shows_the_config(sample):
    rows = runs.refresh_runs(sample, 0, None)[0]
    by = {r["id"]: r for r in rows}
    lenet = by[LENET]
    assert lenet["name"] == f"[lenet\\_sgd\\_mom0.9.h5]({runs.run_href(LENET)})"
    assert (lenet["lr"], lenet["momentum"], lenet["batch_size"], lenet["seed"]) == \
        (0.01, 0.9, 100, 0)
    assert lenet["frames"] == 150 and by[FC]["frames"] == 228  # stored rows: 220 + 8 windows
    assert lenet["status"] == "complete" and by["mnist_fc_adam.h5"]["lr"] == 0.001
    table = find(runs.layout(), lambda c: getattr(c, "id", None) == ids.RUNS_TABLE)[0]
    cols = {c["id"]: c for c in table.columns}
    assert {"name", "lr", "momentum", "batch_size", "seed", "frames", "status"} <= set(cols)
    assert cols["name"]["presentation"] == "markdown"
    assert all(cols[k]["type"] == "numeric" for k in ("lr", "momentum", "batch_size", "seed",
                                                      "frames", "iterations", "size_mb"))
    assert table.sort_action == "native" and table.markdown_options["link_target"] == "_self"


def test_runs_filter_box_matches_every_word(sample):
    rows = runs.refresh_runs(sample, 0, None)[0]
    assert find(runs.layout(), lambda c: getattr(c, "id", None) == ids.RUNS_FILTER)

    def names(q):
        return sorted(r["id"] for r in runs.filter_rows(rows, q))

    assert names("") == sorted(r["id"] for r in rows)
    assert names("LENET") == [LENET]
    assert names("mnist_fc sgd") == ["mnist_fc_sgd_mom0.9.h5", "mnist_fc_sgd_mom0.h5"]
    assert names("lr=0.01") == [LENET, FC] and names("momentum=0") == ["mnist_fc_sgd_mom0.h5"]
    assert names("run") == []  # the link's URL is not searched
    assert names("adam") == ["grokking_transformer.h5", "mnist_fc_adam.h5"]  # adamw too
    data, hint = runs.filtered_table(rows, "adam mnist")
    assert [r["id"] for r in data] == ["mnist_fc_adam.h5"] and hint.startswith("1 of 5")


# -- item 10: compare page ------------------------------------------------------------------------
def test_compare_has_export_buttons_on_every_figure(app):
    layout = compare.layout(ids=["fc.h5", "fc_seed3.h5"])
    graphs = {ids.CMP_LOSS, ids.CMP_HELP, ids.CMP_LAYER_TOTALS, ids.CMP_EXAMPLE, "cmp-heat-0",
              "cmp-heat-1"}
    assert export_graphs(layout) == graphs
    out = compare.export(get_state(app), {"graph": "cmp-heat-1", "fmt": "csv"},
                         ["fc.h5", "fc_seed3.h5"], 10, "fraction", "row", "fc1")
    rows = list(csv.reader(io.StringIO(out["content"])))
    assert out["filename"] == "compare-cmp-heat-1.csv" and len(rows) > 20 * 30


def test_compare_matches_layers_only_within_one_network(sample):
    ok, cards, opts, first = compare.check_runs(sample, [LENET, FC])
    assert ok == [LENET, FC]
    note = [c for c in cards if "info-card" in (getattr(c, "className", "") or "")]
    assert note and "Different networks" in str(note[0].children)
    labels = [o["label"] for o in opts]
    assert "fc1 (lenet)" in labels and "fc1 (mnist_fc)" in labels  # two different layers
    fc1_of_mnist = next(o["value"] for o in opts if o["label"] == "fc1 (mnist_fc)")
    lenet_fig, fc_fig = compare.heatmaps(sample, [LENET, FC], 0, "fraction", "row", fc1_of_mnist)
    assert "different network" in lenet_fig.layout.annotations[0].text
    assert len(fc_fig.data) and fc_fig.data[0].z is not None
    totals = compare.overlays(sample, [LENET, FC], 0, "fraction")[2]
    titles = [a.text for a in totals.layout.annotations]
    assert titles == ["network: lenet", "network: mnist_fc"]
    lenet_bars, fc_bars = totals.data
    assert lenet_bars.xaxis != fc_bars.xaxis  # fc1 of each on its own axis
    assert list(lenet_bars.x) == ["conv1", "conv2", "fc1", "fc2"]
    # one network: layers still match by name, as before
    ok, cards, opts, first = compare.check_runs(sample, [FC, "mnist_fc_adam.h5"])
    assert first == "fc1" and not any("info-card" in (getattr(c, "className", "") or "")
                                      for c in cards)
