"""Peer stack (a): websockets + stdlib json + nats-py ``js.publish_async``, as an end-to-end pipeline process.

    python -m benchmarks.baselines.ws_json_natspy --url WS --nats URL --key PEM --prefix P --markets JSON

What a straightforward Python connector does: ``websockets`` (17, no compression) ``recv()`` per frame,
``json.loads`` into dicts, the schema-v1 record built from the dict with the same exact conversions
as the connector (``msgspec_normalizer._dict_fields``, record text joined from ``json`` string
escapes; order-book snapshots and lifecycles, rare in a session, go to the project's Python twin),
``recv_ts`` appended, then the raw frame and the record published with ``js.publish_async`` and a
``Nats-Msg-Id`` each (the connector's subjects and ids), at most ``--window`` unacked. No sequencing.
Measured like every pipeline (``e2e_common.Meter``): from the connect to the last ack.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

from benchmarks.baselines.msgspec_normalizer import _JSON_STR, Fallback, _dict_fields, _stdlib_value
from benchmarks.e2e_common import (
    CONTROL_TYPES,
    Meter,
    PeerIds,
    baseline_main,
    cap_receive_buffer,
    subscribe_commands,
    with_recv_ts,
)
from ssmd_fast import _normalize_py as twin
from ssmd_fast.errors import InvalidFrame

_NORM_TYPE = {"trade": "trade", "ticker": "ticker", "orderbook_snapshot": "book_snapshot",
              "orderbook_delta": "book_delta", "market_lifecycle_v2": "market_lifecycle",
              "event_lifecycle": "event_lifecycle"}


def normalize(obj: dict, frame: bytes) -> bytes | None:
    """The schema-v1 record of a decoded frame (stdlib json), None for frames without one."""
    try:
        fields = _dict_fields(obj, str, _JSON_STR)
    except (Fallback, TypeError, AttributeError):
        try:
            return twin.normalize_frame(frame)
        except InvalidFrame:
            return None
    return ("{" + ",".join([f'"{k}":{_stdlib_value(v)}' for k, v in fields]) + "}").encode()


async def run(args) -> dict:
    import nats
    import websockets

    from ssmd_fast.kalshi.auth import KalshiCredentials

    creds = KalshiCredentials("bench", Path(args.key).read_text())
    nc = await nats.connect(args.nats)
    js = nc.jetstream(publish_async_max_pending=args.window)
    ids = PeerIds(args.prefix, secrets.token_hex(6))
    state = {"frames": 0, "published": 0}

    def progress():
        return state["frames"], state["published"] - js.publish_async_pending()

    meter = Meter(progress, lambda: state["frames"] > 0 and js.publish_async_pending() == 0,
                  idle=args.idle, timeout=args.timeout)

    async def receive(ws) -> None:
        publish = js.publish_async
        while True:
            frame = await ws.recv(decode=False)
            state["frames"] += 1
            try:
                obj = json.loads(frame)
            except ValueError:
                continue
            ftype = obj.get("type") if type(obj) is dict else None
            if ftype is None or ftype in CONTROL_TYPES:
                continue
            record = normalize(obj, frame)
            msg = obj.get("msg") or {}
            rtype = _NORM_TYPE.get(ftype)
            ticker = msg.get("event_ticker" if ftype == "event_lifecycle" else "market_ticker") or ftype
            rs, rid, ns, nid = ids.ids(ftype, rtype, ticker, obj.get("sid"), obj.get("seq"), msg.get("trade_id"))
            await publish(rs, frame, headers={"Nats-Msg-Id": rid})
            state["published"] += 1
            if record is not None:
                await publish(ns, with_recv_ts(record, time.time_ns()), headers={"Nats-Msg-Id": nid})
                state["published"] += 1

    meter.start()
    async with websockets.connect(args.url, additional_headers=creds.websocket_headers(), compression=None,
                                  max_size=1 << 20, ping_interval=None) as ws:
        cap_receive_buffer(ws.transport.get_extra_info("socket"))
        for cmd in subscribe_commands(json.loads(args.markets)):
            await ws.send(cmd.decode())
        task = asyncio.get_running_loop().create_task(receive(ws))
        await meter.wait()
        task.cancel()
    await nc.close()
    return meter.result(state["published"], state["frames"])


def main(argv: list[str] | None = None) -> int:
    return baseline_main(run, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
