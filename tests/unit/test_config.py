import os
import textwrap

import pytest

from ssmd_fast.config import (
    DEMO_WS_URL,
    PRODUCTION_WS_URL,
    Secret,
    TransportConfig,
    load_environment,
    loads_environment,
)
from ssmd_fast.credentials import KalshiConfig, resolve_credentials
from ssmd_fast.errors import ConfigError

SEED = textwrap.dedent("""\
    name: kalshi-dev
    feed: kalshi
    status: active
    transport:
      type: nats
      url: nats://localhost:4222
    storage:
      type: file
      path: ./data/kalshi
    keys:
      - name: KALSHI_API_KEY
        type: api_key
        source: env
      - name: KALSHI_PRIVATE_KEY
        type: api_secret
        source: env
    """)


def load(text: str, name: str = "kalshi-dev.yaml"):
    return loads_environment(textwrap.dedent(text), name)


def error_of(text: str, name: str = "kalshi-dev.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text, name)
    return info.value


def test_seed_loads_as_is_with_defaults():
    cfg = load(SEED)
    assert cfg.name == "kalshi-dev" and cfg.feed == "kalshi" and cfg.status == "active"
    assert cfg.transport.type == "nats" and cfg.transport.url == ("nats://localhost:4222",)
    assert cfg.transport.subject_prefix == "kalshi_dev.kalshi"
    assert cfg.transport.stream == "KALSHI_DEV_KALSHI"
    assert cfg.transport.publish == ("raw", "normalized")
    assert cfg.transport.provision == "create"
    assert cfg.storage.type == "file" and cfg.storage.path == "./data/kalshi"
    assert cfg.storage.format == "raw" and cfg.storage.rotate == "hourly"
    assert [k.name for k in cfg.keys] == ["KALSHI_API_KEY", "KALSHI_PRIVATE_KEY"]
    assert cfg.exchange.channels == ("ticker", "trade", "market_lifecycle_v2")
    assert cfg.exchange.orderbook.max_markets_per_subscription == 200
    assert cfg.exchange.resolved_url == PRODUCTION_WS_URL
    assert cfg.metrics.listen == "127.0.0.1:9464" and cfg.metrics.host_port == ("127.0.0.1", 9464)
    assert cfg.runner.stats_interval == 10.0 and cfg.runner.shutdown_timeout == 10.0
    assert cfg.exchange.stale_after == 15.0


def test_repository_environments_load():
    for name in ("kalshi-dev.yaml", "kalshi-prod.yaml", "kalshi-local.yaml"):
        cfg = load_environment(os.path.join("environments", name))
        assert cfg.feed == "kalshi"
    assert load_environment("environments/kalshi-dev.yaml").exchange.resolved_url == DEMO_WS_URL


def test_optional_sections_parse():
    cfg = load((SEED + textwrap.dedent("""\
        exchange:
          url: wss://example.test/trade-api/ws/v2
          channels: [ticker, trade]
          orderbook:
            markets: [KXBTCD-26MAR1213-T69499.99, FED-23DEC-T3.00]
            max_markets_per_subscription: 50
          stale_after: 20s
        metrics:
          listen: 0.0.0.0:9999
        runner:
          stats_interval: 500ms
          shutdown_timeout: 2m
        """)).replace("type: file\n  path", "type: file\n  format: both\n  rotate: daily\n  path"))
    assert cfg.exchange.resolved_url == "wss://example.test/trade-api/ws/v2"
    # a configured book list implies the orderbook_delta channel
    assert cfg.exchange.channels == ("ticker", "trade", "orderbook_delta")
    assert cfg.exchange.orderbook.markets == ("KXBTCD-26MAR1213-T69499.99", "FED-23DEC-T3.00")
    assert cfg.exchange.stale_after == 20.0
    assert cfg.runner.stats_interval == 0.5 and cfg.runner.shutdown_timeout == 120.0
    assert cfg.storage.format == "both" and cfg.storage.rotate == "daily"


def test_transport_extras_and_storage_omitted():
    cfg = load("""\
        name: x
        feed: kalshi
        transport:
          type: nats
          url: [nats://a:4222, tls://b:4222]
          stream: MY_STREAM
          subject_prefix: md.kalshi
          publish: [normalized]
          provision: verify
          max_bytes: 10GiB
          batching: false
        """)
    assert cfg.storage is None
    assert cfg.transport.url == ("nats://a:4222", "tls://b:4222")
    assert cfg.transport.stream == "MY_STREAM" and cfg.transport.subject_prefix == "md.kalshi"
    assert cfg.transport.publish == ("normalized",) and cfg.transport.provision == "verify"
    assert cfg.transport.max_bytes == 10 * 2**30
    assert cfg.transport.batching is False and TransportConfig().batching is True  # fast-ingest unless turned off


def test_transport_none_with_storage():
    cfg = load("""\
        name: x
        feed: kalshi
        transport: {type: none}
        storage: {type: file, path: /tmp/x}
        """)
    assert cfg.transport.type == "none"


@pytest.mark.parametrize("text, expected", [
    # unknown key, with the line of the key and a suggestion
    ("name: kalshi-dev\nfeed: kalshi\ntransport:\n  type: nats\n  url: nats://h:1\n\n  urll: x\n",
     "kalshi-dev.yaml:7: transport.urll: unknown key (did you mean 'url'?)"),
    ("name: a\nfeed: kalshi\nbogus: 1\n", "kalshi-dev.yaml:3: bogus: unknown key"),
    # wrong types
    ("name: a\nfeed: kalshi\ntransport:\n  type: nats\n  url: nats://h:1\n  replicas: three\n",
     "kalshi-dev.yaml:6: transport.replicas: expected an integer, got 'three'"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange:\n  use_demo: maybe\n",
     "kalshi-dev.yaml:5: exchange.use_demo: expected true or false, got 'maybe'"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange:\n  channels: ticker\n",
     "kalshi-dev.yaml:5: exchange.channels: expected a list"),
    ("name: a\nfeed: kalshi\ntransport: [nats]\n", "kalshi-dev.yaml:3: transport: expected a mapping"),
    # bad values
    ("name: a\nfeed: kalshi\ntransport:\n  type: kafka\n",
     "kalshi-dev.yaml:4: transport.type: must be one of nats, none; got 'kafka'"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1, publish: [raw, json]}\n",
     "kalshi-dev.yaml:3: transport.publish[1]: must be one of raw, normalized; got 'json'"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1, provision: maybe}\n",
     "transport.provision: must be one of create, verify"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: 'nats://u:p@h:1'}\n",
     "transport.url: credentials in the URL are not allowed"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: 'http://h:1'}\n",
     "transport.url: expected a nats:// or tls:// URL"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nstorage: {type: file, format: xml}\n",
     "kalshi-dev.yaml:4: storage.format: must be one of raw, normalized, both; got 'xml'"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nstorage: {type: file, rotate: weekly}\n",
     "storage.rotate: must be one of hourly, daily"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nmetrics: {listen: 9464}\n",
     "metrics.listen: expected a string"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nmetrics: {listen: 'localhost'}\n",
     "metrics.listen: expected host:port"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {channels: [tickers]}\n",
     "exchange.channels[0]: must be one of"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {orderbook: {markets: ['A B']}}\n",
     "exchange.orderbook.markets[0]: not a valid market ticker"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {orderbook: {max_markets_per_subscription: 0}}\n",
     "exchange.orderbook.max_markets_per_subscription: must lie in 1..100000; got 0"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1, window_min: 0}\n",
     "transport.window_min: must lie in 1..1000000; got 0"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {url: 'https://x/y'}\n",
     "exchange.url: expected a ws:// or wss:// URL"),
    # a port or host the session cannot connect to: it retried the connect forever
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {url: 'ws://127.0.0.1:99999/x'}\n",
     "kalshi-dev.yaml:4: exchange.url: the port must be a number in 1..65535; got 'ws://127.0.0.1:99999/x'"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {url: 'ws://h:abc/x'}\n",
     "exchange.url: the port must be a number in 1..65535"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {url: 'wss://h:0/x'}\n",
     "exchange.url: the port must be a number in 1..65535"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {url: 'ws://a b/x'}\n",
     "exchange.url: 'a b' is not a host name or IP address"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {url: 'ws://u:p@h:99999/x'}\n",
     "exchange.url: credentials in the URL are not allowed"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {stale_after: soon}\n",
     "exchange.stale_after: expected a duration"),
    ("name: Bad Name\nfeed: kalshi\n", "kalshi-dev.yaml:1: name: names are lower-case"),
    ("name: a\nfeed: polymarket\n", "kalshi-dev.yaml:2: feed: must be one of kalshi"),
    # required and cross-field rules
    ("feed: kalshi\n", "kalshi-dev.yaml:1: name: required key is missing"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats}\n", "transport.url: required when transport.type is nats"),
    ("name: a\nfeed: kalshi\ntransport: {type: none}\n", "nothing to write to"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {url: 'wss://x/y', use_demo: true}\n",
     "exchange.use_demo: give either exchange.url or exchange.use_demo, not both"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nexchange: {channels: [orderbook_delta]}\n",
     "exchange.channels: orderbook_delta needs a market list"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nstorage: {path: /x}\n",
     "storage.type: required key is missing"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nkeys:\n  - {name: K, type: password}\n",
     "keys[0].type: must be one of api_key, api_secret"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1}\nkeys:\n  - {type: api_key}\n",
     "keys[0].name: required key is missing"),
    ("name: a\nfeed: kalshi\ntransport: {type: nats, url: nats://h:1, duplicate_window: 2h, max_age: 1h}\n",
     "transport.duplicate_window: must not be longer than transport.max_age"),
    # YAML-level problems
    ("name: a\nname: b\nfeed: kalshi\n", "kalshi-dev.yaml:2: name: key given twice"),
    ("name: a\nfeed: [kalshi\n", "kalshi-dev.yaml:"),
    ("", "the file is empty"),
])
def test_errors_name_file_line_and_key(text, expected):
    err = error_of(text)
    assert expected in str(err), str(err)
    assert str(err).startswith("kalshi-dev.yaml")


def yaml_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        loads_environment(text, "c.yaml")
    return str(info.value)


def test_an_error_in_an_aliased_value_is_reported_at_the_alias():
    msg = yaml_error("name: &n a\nfeed: kalshi\ntransport:\n  type: nats\n  url: nats://h:4222\n\nstorage: *n\n")
    assert msg.startswith("c.yaml:7: storage: expected a mapping"), msg   # the anchor is on line 1
    msg = yaml_error("name: a\nfeed: kalshi\ntransport: &t\n  type: nats\n  url: nats://h:4222\nstorage: *t\n")
    assert msg.startswith("c.yaml:4: storage.type: must be one of file, none"), msg  # inside: the anchor's text


def test_an_undefined_alias_is_reported_at_its_line():
    msg = yaml_error("name: a\nfeed: kalshi\ntransport:\n  type: nats\n  url: nats://h:4222\n\nstorage: *x\n")
    assert msg == "c.yaml:7: YAML syntax: found undefined alias 'x'"


def test_an_alias_to_a_good_value_loads():
    cfg = loads_environment(textwrap.dedent("""\
        name: a
        feed: kalshi
        transport: {type: nats, url: &u nats://h:4222}
        exchange:
          markets: &m [KX-1, KX-2]
          orderbook: {markets: *m}
        """))
    assert cfg.exchange.markets == cfg.exchange.orderbook.markets == ("KX-1", "KX-2")


def test_load_environment_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_environment(tmp_path / "nope.yaml")


def test_load_environment_unreadable_or_not_text(tmp_path):
    with pytest.raises(ConfigError) as got:     # was "cannot read: [Errno 21] Is a directory: '...'"
        load_environment(tmp_path)
    assert str(got.value) == f"{tmp_path}: cannot read: Is a directory"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: a\nfeed: kalshi  # caf\xe9\n")
    with pytest.raises(ConfigError) as got:     # was "cannot read: 'utf-8' codec can't decode byte 0xe9 in ..."
        load_environment(latin1)
    assert str(got.value) == f"{latin1}:2: not UTF-8 text (byte 0xe9)"


# --------------------------------------------------------------------------- credentials


def _pem(key_pair) -> str:
    return key_pair[0].decode()


def test_from_env_pem_text(key_pair):
    cfg = KalshiConfig.from_env({"KALSHI_API_KEY": "key-1", "KALSHI_PRIVATE_KEY": _pem(key_pair)})
    assert cfg.api_key == "key-1" and cfg.use_demo is False
    assert cfg.private_key.reveal().startswith("-----BEGIN PRIVATE KEY-----")
    for text in (repr(cfg), str(cfg), repr(cfg.private_key), str(cfg.to_dict() if hasattr(cfg, "to_dict") else "")):
        assert "BEGIN" not in text and _pem(key_pair)[40:80] not in text


def test_from_env_escaped_newlines(key_pair):
    escaped = _pem(key_pair).replace("\n", "\\n")
    cfg = KalshiConfig.from_env({"KALSHI_API_KEY": "k", "KALSHI_PRIVATE_KEY": escaped})
    assert cfg.private_key.reveal() == _pem(key_pair)


def test_from_env_key_file(tmp_path, key_pair):
    path = tmp_path / "key.pem"
    path.write_bytes(key_pair[0])
    path.chmod(0o600)
    cfg = KalshiConfig.from_env({"KALSHI_API_KEY": "k", "KALSHI_PRIVATE_KEY_FILE": str(path),
                                 "KALSHI_USE_DEMO": "true"})
    assert cfg.use_demo is True and cfg.private_key.reveal() == _pem(key_pair)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_from_env_refuses_readable_key_file(tmp_path, key_pair, mode):
    path = tmp_path / "key.pem"
    path.write_bytes(key_pair[0])
    path.chmod(mode)
    with pytest.raises(ConfigError) as info:
        KalshiConfig.from_env({"KALSHI_API_KEY": "k", "KALSHI_PRIVATE_KEY_FILE": str(path)})
    msg = str(info.value)
    assert "accessible by group or others" in msg and f"{mode:04o}" in msg and "chmod 600" in msg
    assert "BEGIN" not in msg


@pytest.mark.parametrize("env, expected", [
    ({}, "KALSHI_API_KEY is not set"),
    ({"KALSHI_API_KEY": "k"}, "neither KALSHI_PRIVATE_KEY"),
    ({"KALSHI_API_KEY": "k", "KALSHI_PRIVATE_KEY": "x", "KALSHI_PRIVATE_KEY_FILE": "/y"}, "not both"),
    ({"KALSHI_API_KEY": "k", "KALSHI_PRIVATE_KEY_FILE": "/nonexistent/key.pem"}, "cannot read the private key file"),
    ({"KALSHI_API_KEY": "k", "KALSHI_PRIVATE_KEY": "x", "KALSHI_USE_DEMO": "yes"}, "KALSHI_USE_DEMO: must be true or false"),
])
def test_from_env_errors(env, expected):
    with pytest.raises(ConfigError, match=expected):
        KalshiConfig.from_env(env)


def test_resolve_credentials_from_named_keys(tmp_path, key_pair):
    cfg = load(SEED)
    creds = resolve_credentials(cfg, {"KALSHI_API_KEY": "abc", "KALSHI_PRIVATE_KEY": _pem(key_pair)})
    assert creds.api_key == "abc"
    path = tmp_path / "k.pem"
    path.write_bytes(key_pair[0])
    path.chmod(0o600)
    creds = resolve_credentials(cfg, {"KALSHI_API_KEY": "abc", "KALSHI_PRIVATE_KEY_FILE": str(path)})
    assert creds.private_key.reveal() == _pem(key_pair)
    with pytest.raises(ConfigError, match="KALSHI_API_KEY"):
        resolve_credentials(cfg, {"KALSHI_PRIVATE_KEY": _pem(key_pair)})


def test_secret_never_shows():
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s) and "hunter2" not in f"{s}"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(s)


def test_config_dump_has_no_secret_values(key_pair):
    cfg = load(SEED)
    dumped = repr(cfg) + str(cfg.to_dict())
    assert "BEGIN" not in dumped


def test_the_storage_path_defaults_to_the_environments_name():
    """It was ./data/kalshi whatever the name: two environments on the defaults fought over one lock."""
    text = "name: {}\nfeed: kalshi\ntransport: {{type: none}}\nstorage: {{type: file}}\n"
    assert load(text.format("kalshi-a")).storage.path == "./data/kalshi-a"
    assert load(text.format("kalshi-b")).resolved_spill_path == "./data/kalshi-b/spill"
    assert load("name: x\nfeed: kalshi\ntransport: {type: none}\nstorage: {type: file, path: /srv/x}\n").storage.path \
        == "/srv/x"
