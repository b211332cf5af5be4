"""KALSHI_USE_DEMO chooses the demo exchange, for the sessions as for check-config (it used to reach the
credentials only, and the sessions went to production)."""

from __future__ import annotations

import pytest

from ssmd_fast.config import DEMO_WS_URL, PRODUCTION_WS_URL, load_environment
from ssmd_fast.credentials import with_exchange_choice
from ssmd_fast.errors import ConfigError

NO_KEYS = "name: t5\nfeed: kalshi\ntransport: {type: none}\nstorage: {type: file, path: %s}\n"


def _env(tmp_path, text: str):
    path = tmp_path / "t5.yaml"
    path.write_text(text)
    return load_environment(path)


def _key_env(tmp_path, key_pair, demo: str) -> dict[str, str]:
    key = tmp_path / "k.pem"
    key.write_bytes(key_pair[0])
    key.chmod(0o600)
    return {"KALSHI_API_KEY": "k", "KALSHI_PRIVATE_KEY_FILE": str(key), "KALSHI_USE_DEMO": demo}


@pytest.mark.parametrize("demo, url", [("true", DEMO_WS_URL), ("false", PRODUCTION_WS_URL)])
def test_the_sessions_go_where_kalshi_use_demo_says(tmp_path, key_pair, monkeypatch, demo, url):
    from ssmd_fast.runner import Runner

    for name, value in _key_env(tmp_path, key_pair, demo).items():
        monkeypatch.setenv(name, value)
    runner = Runner(_env(tmp_path, NO_KEYS % (tmp_path / "data")))
    assert runner.cfg.exchange.resolved_url == url
    sessions = runner._build_sessions()
    assert sessions and {s.url for s in sessions} == {url}


def test_check_config_shows_the_demo_url(tmp_path, key_pair, monkeypatch, capsys):
    from ssmd_fast.cli import main

    for name, value in _key_env(tmp_path, key_pair, "true").items():
        monkeypatch.setenv(name, value)
    (tmp_path / "t5.yaml").write_text(NO_KEYS % (tmp_path / "data"))
    assert main(["check-config", "--env", str(tmp_path / "t5.yaml"), "--credentials"]) == 0
    assert f"resolved_url: {DEMO_WS_URL}" in capsys.readouterr().out


def test_the_variable_is_not_read_with_a_keys_section(tmp_path):
    text = NO_KEYS % (tmp_path / "data") + ("keys:\n  - {name: KALSHI_API_KEY, type: api_key}\n"
                                            "  - {name: KALSHI_PRIVATE_KEY, type: api_secret}\n")
    cfg = _env(tmp_path, text)
    assert cfg.keys and with_exchange_choice(cfg, {"KALSHI_USE_DEMO": "true"}) is cfg


def test_the_variable_and_exchange_url_both_choosing_is_an_error(tmp_path):
    cfg = _env(tmp_path, NO_KEYS % (tmp_path / "data") + "exchange: {url: 'ws://127.0.0.1:1/trade-api/ws/v2'}\n")
    with pytest.raises(ConfigError, match="KALSHI_USE_DEMO=true and exchange.url"):
        with_exchange_choice(cfg, {"KALSHI_USE_DEMO": "true"})
    assert with_exchange_choice(cfg, {"KALSHI_USE_DEMO": "false"}) is cfg
    with pytest.raises(ConfigError, match="KALSHI_USE_DEMO: must be true or false"):
        with_exchange_choice(cfg, {"KALSHI_USE_DEMO": "1"})
