"""Load-time rules (config_checks.py): configurations that passed check-config and started run, then failed
late or silently, now fail at load naming file, line and key."""

from __future__ import annotations

import pytest

from ssmd_fast.config import loads_environment
from ssmd_fast.config_checks import MIN_MEMORY_QUEUE_BYTES
from ssmd_fast.errors import ConfigError
from ssmd_fast.sinks.natsconn import Endpoint

HEAD = "name: a\nfeed: kalshi\ntransport:\n  type: nats\n"


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        loads_environment(text, "c.yaml")
    return str(info.value)


# --------------------------------------------------------------------------- transport.url


@pytest.mark.parametrize("url, reason", [
    ("'nats://127.0.0.1:99999'", "the port must be a number in 1..65535"),
    ("'nats://h:0'", "the port must be a number in 1..65535"),          # was connected to as 4222
    ("'nats://h:abc'", "the port must be a number in 1..65535"),
    ("'not a url'", "'not a url' is not a host name or IP address"),
    ("'nats://a b:4222'", "'a b' is not a host name or IP address"),
    ("'nats://h%20x:4222'", "'h%20x' is not a host name or IP address"),
    ("'nats://[::1'", "not a NATS server URL (Invalid IPv6 URL)"),         # was a ValueError traceback
    ("'nats://[zz::1]:4222'", "not a NATS server URL ('zz::1' does not appear to be an IPv4 or IPv6 address)"),
    ("'nats://a:4222,nats://b:4222'", "one server per URL; list several as url: [nats://a:4222, nats://b:4222]"),
    ("'http://h:4222'", "expected a nats:// or tls:// URL with a host"),
    ("'nats://:4222'", "expected a nats:// or tls:// URL with a host"),
    ("'nats://u:p@h:4222'", "credentials in the URL are not allowed"),
])
def test_a_bad_nats_url_fails_at_load_with_its_line(url, reason):
    msg = error_of(HEAD + f"  url: {url}\n")
    assert msg.startswith("c.yaml:5: transport.url: " + reason), msg


@pytest.mark.parametrize("url", ["nats://u:s3cr3t@h:99999", "http://u:s3cr3t@h:1", "nats://u:s3cr3t@a:1,nats://b:2",
                                 "nats://u:s3cr3t@a b:1"])
def test_a_bad_url_with_credentials_is_refused_without_showing_them(url):
    msg = error_of(HEAD + f"  url: '{url}'\n")
    assert "credentials in the URL are not allowed" in msg and "s3cr3t" not in msg, msg


def test_a_bad_url_in_a_list_is_named_by_its_index_and_line():
    msg = error_of(HEAD + "  url:\n    - nats://a:4222\n    - nats://b:70000\n")
    assert msg.startswith("c.yaml:7: transport.url[1]: the port must be a number"), msg


@pytest.mark.parametrize("url, address", [
    ("nats://localhost:4222", ("localhost", 4222, False)),
    ("tls://nats-0.nats.svc.cluster.local:4443", ("nats-0.nats.svc.cluster.local", 4443, True)),
    ("nats://127.0.0.1:1", ("127.0.0.1", 1, False)),
    ("nats://[::1]:65535", ("::1", 65535, False)),
    ("nats_1:4222", ("nats_1", 4222, False)),           # no scheme: nats://
    ("nats://h", ("h", 4222, False)),                    # no port: 4222
    ("tls://h:4222/", ("h", 4222, True)),
])
def test_a_good_url_loads_and_is_what_the_publisher_connects_to(url, address):
    cfg = loads_environment(HEAD + f"  url: '{url}'\n", "c.yaml")
    assert Endpoint(urls=cfg.transport.url).address(0) == address


# --------------------------------------------------------------------------- sizes


def test_the_memory_queue_has_a_floor():
    msg = error_of(HEAD + "  url: nats://h:4222\n  memory_queue_bytes: 0\n")
    assert msg.startswith(f"c.yaml:6: transport.memory_queue_bytes: must be at least {MIN_MEMORY_QUEUE_BYTES} "
                          "(64KiB)"), msg
    assert "got 0" in msg
    assert "got 65535" in error_of(HEAD + "  url: nats://h:4222\n  memory_queue_bytes: 65535\n")
    cfg = loads_environment(HEAD + "  url: nats://h:4222\n  memory_queue_bytes: 64KiB\n  spill: {max_bytes: 64KiB}\n")
    assert cfg.transport.memory_queue_bytes == cfg.transport.spill.max_bytes == 64 << 10


@pytest.mark.parametrize("spill, queue, line", [
    ("max_bytes: 0", "", 7),
    ("max_bytes: 32MiB", "", 7),                 # below the default memory queue (64 MiB)
    ("path: /x", "  memory_queue_bytes: 30GiB\n", 8),   # the default cap (20 GiB) below the queue: the spill's line
])
def test_the_spill_cap_takes_at_least_the_memory_queue(spill, queue, line):
    msg = error_of(HEAD + "  url: nats://h:4222\n" + queue + f"  spill:\n    {spill}\n")
    assert msg.startswith(f"c.yaml:{line}: transport.spill.max_bytes: must be at least "
                          "transport.memory_queue_bytes"), msg


def test_fsync_every_zero_means_by_the_interval_and_loads():
    cfg = loads_environment(HEAD + "  url: nats://h:4222\n  spill: {fsync_every: 0, fsync_interval: 0.2}\n")
    assert cfg.transport.spill.fsync_every == 0 and cfg.transport.spill.fsync_interval == 0.2


# --------------------------------------------------------------------------- NATS auth


@pytest.mark.parametrize("auth, expected", [
    ("{user: bob}", "c.yaml:6: transport.auth.password_env: user needs password_env"),
    ("{password_env: PW}", "c.yaml:6: transport.auth.user: password_env needs user"),
    ("{user: bob, password_env: PW, token_env: TOK}",
     "c.yaml:6: transport.auth: give one NATS auth method, not token_env and user + password_env"),
    ("{token_env: TOK, creds_file: /x.creds}", "c.yaml:6: transport.auth: give one NATS auth method, not token_env and creds_file"),
    ("{nkey_seed_file: /s, creds_file: /c}", "c.yaml:6: transport.auth: give one NATS auth method, not nkey_seed_file and creds_file"),
])
def test_nats_auth_combinations_that_cannot_work_fail_at_load(auth, expected):
    msg = error_of(HEAD + f"  url: nats://h:4222\n  auth: {auth}\n")
    assert msg.startswith(expected), msg


def test_the_auth_error_points_at_the_second_method():
    msg = error_of(HEAD + "  url: nats://h:4222\n  auth:\n    token_env: TOK\n\n    creds_file: /x.creds\n")
    assert msg.startswith("c.yaml:9: transport.auth: give one NATS auth method"), msg


@pytest.mark.parametrize("auth", ["{user: bob, password_env: PW}", "{token_env: TOK}", "{creds_file: /c}",
                                  "{nkey_seed_file: /s}", "{}"])
def test_one_auth_method_loads(auth):
    loads_environment(HEAD + f"  url: nats://h:4222\n  auth: {auth}\n")


def test_a_tls_key_file_needs_its_certificate():
    msg = error_of(HEAD + "  url: tls://h:4222\n  tls:\n    key_file: /k.pem\n")
    assert msg.startswith("c.yaml:7: transport.tls.key_file: needs transport.tls.cert_file"), msg


# --------------------------------------------------------------------------- keys


KEYS = HEAD + "  url: nats://h:4222\nkeys:\n"


@pytest.mark.parametrize("keys, expected", [
    ("  - {name: KALSHI_PRIVATE_KEY, type: api_secret}\n", "c.yaml:7: keys: no key of type api_key is listed"),
    ("  - {name: KALSHI_API_KEY, type: api_key}\n", "c.yaml:7: keys: no key of type api_secret is listed"),
    ("  - {name: A, type: api_key}\n  - {name: S, type: api_secret}\n  - {name: B, type: api_key}\n",
     "c.yaml:9: keys[2].type: a second key of type api_key (B, after A)"),
    ("  - {name: A, type: api_key}\n  - {name: A, type: api_secret}\n", "c.yaml:8: keys[1].name: A is listed twice"),
])
def test_the_keys_list_names_one_key_id_and_one_private_key(keys, expected):
    msg = error_of(KEYS + keys)
    assert msg.startswith(expected), msg


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("text, path", [
    (HEAD + "  url: nats://h:4222\n  spill: {path: /var/spill}\n", "/var/spill"),
    (HEAD + "  url: nats://h:4222\nstorage: {type: file, path: /srv/k}\n", "/srv/k/spill"),
    (HEAD + "  url: nats://h:4222\nstorage: {type: none}\n", "data/a/spill"),
    (HEAD + "  url: nats://h:4222\n", "data/a/spill"),
])
def test_resolved_spill_path(text, path):
    assert loads_environment(text).resolved_spill_path == path
