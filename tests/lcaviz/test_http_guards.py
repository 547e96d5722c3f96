"""Server hardening (issue 28 item 4): request body limit, Host check against DNS rebinding,
links in labels stripped to text, and no server paths in answers; through Flask's test client
(no network)."""

from __future__ import annotations

import pytest

from lcaviz.app import create_app
from lcaviz.app.security import MAX_BODY_BYTES, host_name, strip_links
from lcaviz.bundle.synthetic import write_synthetic_bundle
from tests.lcaviz.test_hostile_bundles import init_over_http, leaks

LINK = '<a href="https://evil.example/">click me</a>'


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    runs = tmp_path_factory.mktemp("guards") / "runs"
    runs.mkdir()
    write_synthetic_bundle(runs / "link.h5", n_iters=8, layers=((LINK, (4, 5)), ("fc2", (3, 4))),
                           n_classes=3, seed=0)
    return runs


@pytest.fixture(scope="module")
def client(runs_dir):
    return create_app(runs_dir).server.test_client()


def test_request_body_over_the_limit_is_refused_unread(client):
    r = client.post("/_dash-update-component", data=b"x" * (MAX_BODY_BYTES + 1),
                    content_type="application/json")
    assert r.status_code == 413
    assert init_over_http(client, "link.h5").status_code == 200  # normal callbacks still work


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8050", "10.0.0.5:8050",
                                  "127.0.0.1.evil.example"])
def test_foreign_host_header_is_refused(client, host):
    r = client.get("/", headers={"Host": host})
    assert r.status_code == 421 and b"Host" in r.data


@pytest.mark.parametrize("host", ["127.0.0.1:8050", "localhost:8050", "[::1]:8050", "localhost"])
def test_loopback_host_headers_are_served(client, host):
    assert client.get("/", headers={"Host": host}).status_code == 200


def test_host_check_is_off_when_the_user_chose_an_address(runs_dir):
    c = create_app(runs_dir, check_host=False).server.test_client()
    assert c.get("/", headers={"Host": "my-workstation.lan:8050"}).status_code == 200


def test_host_name_parsing():
    assert host_name("[::1]:8050") == "::1" and host_name("LOCALHOST:1") == "localhost"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name("::1") == "::1"


def test_links_in_names_reach_the_browser_as_text(client):
    r = init_over_http(client, "link.h5")  # layer options carry the layer names
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and "click me" in text
    assert "evil.example" not in text and "<a " not in text and "\\u003ca" not in text


def test_strip_links_keeps_other_markup_and_json_intact():
    body = b'{"a": "<b>x</b><br><a href=\\"https://e.x/\\" target=_blank>t</a>", "b": "<a"}'
    assert strip_links(body) == b'{"a": "<b>x</b><br>t", "b": "<a"}'
    assert strip_links(b'"\\u003ca href=\\"https://e\\"\\u003eq\\u003c/a\\u003e"') == b'"q"'


def test_answers_never_name_the_runs_directory(client, runs_dir):
    (runs_dir / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 200)
    r = init_over_http(client, "broken.h5")
    assert r.status_code == 200 and "broken.h5" in r.get_data(as_text=True)
    assert not leaks(r.get_data(as_text=True), runs_dir)
    r = client.get("/lcaviz/frames?run=broken.h5&layer=0")
    assert r.status_code == 404 and not leaks(r.get_data(as_text=True), runs_dir)



def test_guard_removes_the_runs_directory_from_any_json_answer(tmp_path):
    """Errors raised deep in a view (not through AppState.open) are cleaned on the wire too."""
    import flask

    from lcaviz.app.security import install_guards

    server = flask.Flask("t")
    escaped = str(tmp_path / "x.h5").replace("/", "\\u002f")
    server.add_url_rule("/j", "j", lambda: flask.Response(
        '{"m": "' + escaped + ': damaged"}', mimetype="application/json"))
    install_guards(server, tmp_path)
    text = server.test_client().get("/j").get_data(as_text=True)
    assert text == '{"m": "x.h5: damaged"}'


def test_downloads_pass_unchanged(tmp_path):
    """A file sent with dcc.Download (the HTML report embeds plotly.js, whose code holds
    "<a" strings) is the file's bytes: the link stripping leaves it alone."""
    import json

    import flask

    from lcaviz.app.security import install_guards

    server = flask.Flask("t")
    payload = json.dumps({"response": {"dl": {"data": {
        "content": 'if(y<A;){x="<a href=\\"https://plot.ly\\">"}</a>', "filename": "r.html",
        "base64": False, "type": None}}}})
    server.add_url_rule("/d", "d", lambda: flask.Response(payload, mimetype="application/json"))
    install_guards(server, tmp_path)
    assert server.test_client().get("/d").get_data(as_text=True) == payload
