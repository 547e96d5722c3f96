"""Named parameter groups in the bundle (issue 16.4): lca-run on the transformer stores its
attention heads as ``params/groups`` with per-iteration ``lca_group`` / ``lca_val_group``;
group sums refine the layer sums exactly; --modulus/--train-fraction reach the data; the
reader refuses groups that do not fit the bundle."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from compute.run.cli import main as lca_run
from lcaviz.bundle import CorruptBundleError, RunBundle

HEADS = 4


@pytest.fixture(scope="module")
def grok(tmp_path_factory):
    out = tmp_path_factory.mktemp("groups") / "grok.h5"
    rc = lca_run(["--net", "transformer", "--dataset", "modular-addition", "--modulus", "7",
                  "--train-fraction", "0.5", "--optimizer", "adamw", "--lr", "1e-3",
                  "--weight-decay", "1.0", "--batch-size", "24", "--iters", "3", "--val-lca",
                  "--no-per-class", "--method", "rk4", "--precision", "float64",
                  "--lca-rows", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    return out


def test_modulus_and_fraction_reach_the_data(grok):
    with RunBundle(grok) as b:
        assert (b.config["modulus"], b.config["train_fraction"]) == (7, 0.5)
        assert b.n_classes == 7
        assert len(b.splits()) == 3


def test_heads_are_groups_whose_sums_refine_the_layer_sums(grok):
    with RunBundle(grok) as b:
        assert b.has_groups
        names = b.group_names
        for proj in ("q", "k", "v", "o"):
            assert [f"blocks.0.attn.{proj}.head{h}" for h in range(HEADS)] == \
                [n for n in names if n.startswith(f"blocks.0.attn.{proj}.")]
        assert "embed" in names and "unembed" in names
        # the groups partition the parameters
        cols = np.concatenate([b.group_columns(g) for g in range(len(names))])
        assert np.array_equal(np.sort(cols), np.arange(b.n_params))
        assert b.group_sizes.sum() == b.n_params
        for g, li in enumerate(b.group_layer):  # every group lies in the layer it names
            assert names[g].startswith(b.layer_names[li])
        for lca_g, lca_l in ((b.lca_group(), b.lca_layer()),
                             (b.lca_val_group(), b.lca_val_layer())):
            assert lca_g.shape == (3, len(names))
            by_layer = np.zeros_like(lca_l)
            for g, li in enumerate(b.group_layer):
                by_layer[:, li] += lca_g[:, g]
            np.testing.assert_allclose(by_layer, lca_l, rtol=0, atol=1e-13)
        # per-parameter rows (every iteration) summed over a head equal its group sum
        head = names.index("blocks.0.attn.v.head2")
        rows = b.rows(0, 3, b.group_columns(head)).astype(np.float64).sum(1)
        np.testing.assert_allclose(rows, b.lca_group()[:, head], rtol=1e-5, atol=1e-9)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "fc.h5"
    assert lca_run(["--net", "mnist_fc", "--dataset", "synthetic", "--train-size", "100",
                    "--val-size", "20", "--batch-size", "50", "--iters", "2", "--no-progress",
                    "--out", str(out)]) == 0
    return out


def test_models_without_heads_store_no_groups(plain):
    out = plain
    with RunBundle(out) as b:
        assert not b.has_groups and b.lca_group() is None


@pytest.mark.parametrize("damage, message", [
    (lambda f: f["params/groups/ranges"].__setitem__((0, 2), 10**9), "ranges"),
    (lambda f: f["params/groups/layer"].__setitem__(0, 99), "params/groups/layer"),
])
def test_reader_refuses_groups_that_do_not_fit(grok, tmp_path, damage, message):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(grok.read_bytes())
    with h5py.File(bad, "r+") as f:
        damage(f)
    with pytest.raises(CorruptBundleError, match=message):
        RunBundle.open(bad)


def test_lca_group_of_the_wrong_width_is_refused(grok, tmp_path):
    bad = tmp_path / "wide.h5"
    bad.write_bytes(grok.read_bytes())
    with h5py.File(bad, "r+") as f:
        data = f["lca_group"][()]
        del f["lca_group"]
        f["lca_group"] = np.hstack([data, data[:, :1]])
    with pytest.raises(CorruptBundleError, match="one per group"):
        RunBundle.open(bad)


def test_run_page_shows_bars_and_curves_per_head(grok):
    from lcaviz.app import create_app, get_state
    from lcaviz.app.pages import run_panels, run_views

    state = get_state(create_app(grok.parent))
    rid = state.run_id(grok)
    with RunBundle(grok) as b:
        lca_group, names, lca_layer = b.lca_group(), b.group_names, b.lca_layer()
    c = run_views.Controls(run_id=rid, bars_by="group")
    bars = run_views.layer_bars(state, c)
    assert list(bars.data[0].x) == names and "per group" in bars.layout.title.text
    np.testing.assert_allclose(bars.data[0].y, lca_group.sum(0), rtol=0, atol=1e-15)
    curves = run_views.layer_curves(state, c)
    assert [tr.name for tr in curves.data] == names
    by_layer = run_views.layer_bars(state, run_views.Controls(run_id=rid))
    np.testing.assert_allclose(by_layer.data[0].y, lca_layer.sum(0), rtol=0, atol=1e-15)
    opts = run_panels.by_options({"has_groups": True})
    assert not opts[1]["disabled"]
    assert run_panels.by_options({"has_groups": False})[1]["disabled"]


def test_bars_by_group_on_a_run_without_groups_shows_layers(plain):
    from lcaviz.app import create_app, get_state
    from lcaviz.app.pages import run_views

    out = plain
    state = get_state(create_app(out.parent))
    bars = run_views.layer_bars(state, run_views.Controls(run_id=state.run_id(out),
                                                          bars_by="group"))
    with RunBundle(out) as b:
        assert list(bars.data[0].x) == list(b.layer_names)
    assert "per layer" in bars.layout.title.text


def test_heatmap_menu_zooms_to_one_head(grok):
    from lcaviz.app import create_app, get_state, ids
    from lcaviz.app.pages import run_callbacks, run_groups
    from lcaviz.app.queries import run_meta

    state = get_state(create_app(grok.parent))
    rid = state.run_id(grok)
    b, _ = state.open(rid)
    meta = run_meta(b)
    q = b.layer_names.index("blocks.0.attn.q")
    opts = run_groups.group_options(state, rid, meta, q)
    assert [o["value"] for o in opts] == [""] + [f"blocks.0.attn.q.head{h}" for h in range(HEADS)]
    assert run_groups.group_options(state, rid, meta, b.layer_names.index("embed")) == \
        [run_groups.WHOLE]  # one group: nothing to choose
    # q.weight is (heads, d_model, d_head): head 2 is the image's third block of d_head
    # columns, every d_model row
    region, stream, plan = run_callbacks.zoom_callback(
        state, ids.HEAT_GROUP, None, rid, meta, q, "row", 1, "fixed", "auto", None, None,
        "blocks.0.attn.q.head2")
    _, d_model, d_head = b.params.set_index("name").loc["blocks.0.attn.q.weight", "shape"]
    assert region == [0, d_model, 2 * d_head, 3 * d_head]
    main = plan[0]
    assert (main["r0"], main["nrows"], main["c0"], main["ncols"]) == (0, d_model, 2 * d_head,
                                                                      d_head)
    cols = b.group_columns("blocks.0.attn.q.head2")
    assert set(range(main["offset"] + 2 * d_model * d_head,
                     main["offset"] + 3 * d_model * d_head)) == set(cols.tolist())
    # back to the whole layer
    assert run_callbacks.zoom_callback(state, ids.HEAT_GROUP, None, rid, meta, q, "row", 1,
                                       "fixed", "auto", plan, region, "")[0] is None
    # a new layer resets a chosen head; a live refresh keeps it
    head2 = "blocks.0.attn.q.head2"
    assert run_callbacks.group_menu(state, ids.LAYER, rid, meta, q, head2)[1] == ""
    assert run_callbacks.group_menu(state, ids.RUN_META, rid, meta, q, "x")[1] is run_callbacks.NU
