"""``flightrec ui --oidc-secrets FILE``: Streamlit's [auth] secrets are checked before launch, so a
mistake stops the start with its reason instead of a sign-in button that fails in the browser; the
file reaches Streamlit as its secrets (``--secrets.files``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flightrec.cli import app
from flightrec.dashboards.auth_config import AuthConfigError, load_auth
from flightrec.dashboards.launch import ui_command

GOOD = """[auth]
redirect_uri = "http://localhost:8501/oauth2callback"
cookie_secret = "a-long-random-cookie-secret-0123456789"
expose_tokens = ["id"]
client_id = "dash"
client_secret = "s3cret"
server_metadata_url = "https://id.example.com/.well-known/openid-configuration"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text(text)
    return path


def test_a_good_file_names_its_providers_and_their_buttons(tmp_path: Path) -> None:
    flat = load_auth(write(tmp_path, GOOD), port=8501).providers()
    assert list(flat) == ["default"] and flat["default"].button_label("default") == "id.example.com"
    named = GOOD.replace('redirect_uri = "http://localhost:8501', 'redirect_uri = "http://127.0.0.1:{port}')
    named = named.replace('expose_tokens = ["id"]\n', 'expose_tokens = "id"\n[auth.okta]\n')
    named += '\n[auth.corp]\nlabel = "Corp SSO"\nclient_id = "c"\nclient_secret = "d"\nserver_metadata_url = "http://127.0.0.1:1/x"\n'
    providers = load_auth(write(tmp_path, named), port=9999).providers()
    assert {name: p.button_label(name) for name, p in providers.items()} == {"okta": "Okta", "corp": "Corp SSO"}


@pytest.mark.parametrize(("change", "reason"), [
    (lambda text: text.replace("[auth]", "[other]"), "has no [auth] table"),
    (lambda text: text.replace('expose_tokens = ["id"]', 'expose_tokens = ["access"]'), 'must hold "id"'),
    (lambda text: text.replace('expose_tokens = ["id"]\n', ""), "expose_tokens"),
    (lambda text: text.replace(":8501/oauth2callback", ":8502/oauth2callback"), "listen on 8501"),
    (lambda text: text.replace("/oauth2callback", "/callback"), "ending in /oauth2callback"),
    (lambda text: text.replace("a-long-random-cookie-secret-0123456789", "short"), "cookie_secret"),
    (lambda text: text.replace('client_secret = "s3cret"\n', ""), "[auth]: client_secret"),
    (lambda text: text.split("client_id")[0], "names no identity provider"),
    (lambda text: text.split("client_id")[0] + '[auth.my_idp]\nclient_id = "x"\n', "underscore"),
    (lambda text: text.replace("https://id.example.com", "id.example.com"), "not an http(s) URL"),
    (lambda text: text + "[broken", "secrets.toml"),
])
def test_a_bad_file_is_refused_with_its_reason(tmp_path: Path, change, reason: str) -> None:
    with pytest.raises(AuthConfigError) as refused:
        load_auth(write(tmp_path, change(GOOD)), port=8501)
    assert reason in str(refused.value), str(refused.value)


def test_flightrec_ui_refuses_a_bad_file_before_starting(tmp_path: Path) -> None:
    bad = write(tmp_path, GOOD.replace('expose_tokens = ["id"]', 'expose_tokens = []'))
    said = CliRunner().invoke(app, ["ui", "--oidc-secrets", str(bad)], env={"COLUMNS": "200"})
    assert said.exit_code == 1 and 'must hold "id"' in said.output.replace("\n", ""), said.output
    missing = CliRunner().invoke(app, ["ui", "--oidc-secrets", str(tmp_path / "nope.toml")], env={"COLUMNS": "200"})
    # rich folds a long temporary path across lines: read the output unfolded
    assert missing.exit_code == 1 and "nope.toml" in missing.output.replace("\n", ""), missing.output


def test_the_file_reaches_streamlit_as_its_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    command = ui_command(port=8501, secrets=path)
    assert command[command.index("--secrets.files") + 1] == str(path.resolve())
    assert "--secrets.files" not in ui_command(port=8501)
