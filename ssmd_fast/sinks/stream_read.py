"""Reading back everything a JetStream stream holds, fast: what the demo, the drills and the tests use to
compare the stream with what the exchange sent.

An ordered consumer on nats-py (``reader.StreamReader``, which ``ssmd-fast tail`` uses) gets a ``Msg``, a
header dict and a metadata object per message: 25,000 messages a second here, so half of the
demo's run went to reading back its 400,000 messages. This reader takes the publisher's own data
connection (``natsconn``: the handshake, credentials and TLS of the connector) with a parser of its own:
an ephemeral push consumer with flow control and no acks is created through the JetStream API, and every
read of the socket is cut into ``StreamMessage``s in one loop.

Nothing is assumed delivered: each message's consumer sequence (from its ``$JS.ACK`` reply subject)
must follow the one before, or the read fails naming the gap, and the read ends only once the count the
consumer reported at its creation (delivered + pending: what matched the filter then) has arrived.
``tests/integration/test_stream_read.py`` compares it with ``reader.StreamReader`` on the same streams.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from urllib.parse import unquote

from ssmd_fast.config import Secret
from ssmd_fast.config_checks import split_nats_url
from ssmd_fast.errors import PublishError
from ssmd_fast.sinks import natsconn
from ssmd_fast.sinks.reader import ReadError, StreamMessage

_ID = b"\r\nNats-Msg-Id:"
_ID_LEN = len(_ID)
_FLOW_CONTROL = b"NATS/1.0 100 FlowControl"
_FC_LEN = len(_FLOW_CONTROL)


class DeliveryParser:
    """The interface of the publisher's ack parser (``feed(data) -> bool``, ``events``, ``reset()``), for
    a connection that receives a push consumer's deliveries: they go to ``messages``; the API's replies
    (``("msg", subject, payload)``), flow-control requests (``("flow", reply)``), ``PING``, ``PONG``,
    ``INFO`` and ``-ERR`` go to ``events`` for the connection and the reader."""

    def __init__(self) -> None:
        self.messages: list[StreamMessage] = []
        self.events: list = []
        self.next_cseq = 1          # the consumer sequence the next delivery must carry
        self.gap = ""               # why the deliveries cannot be trusted any more
        self._rest = b""

    def reset(self) -> None:
        self._rest = b""
        self.events = []

    def feed(self, data: bytes) -> bool:
        buf = self._rest + data if self._rest else bytes(data)
        pos, size = 0, len(buf)
        out, events, find = self.messages, self.events, buf.find
        cseq = self.next_cseq
        while True:
            eol = find(b"\r\n", pos)
            if eol < 0:
                break
            op = buf[pos:pos + 4]
            if op == b"HMSG" or op == b"MSG ":
                parts = buf[pos:eol].split()
                headed = op == b"HMSG"
                start = eol + 2
                end = start + int(parts[-1])
                if end + 2 > size:
                    break           # the rest of this message comes with the next read
                hlen = int(parts[-2]) if headed else 0
                reply = parts[3] if len(parts) == (6 if headed else 5) else b""
                pos = end + 2
                if reply[:8] == b"$JS.ACK.":
                    # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>, or
                    # the v2 form with <domain>.<account hash> after ACK and a random token at the end
                    toks = reply.split(b".")
                    v1 = len(toks) == 9
                    if int(toks[6] if v1 else toks[8]) != cseq:
                        self.gap = self.gap or (f"delivery {int(toks[6] if v1 else toks[8]):,} arrived where "
                                                f"{cseq:,} was due")
                        continue
                    cseq += 1
                    msg_id = None
                    if hlen:
                        i = find(_ID, start, start + hlen)
                        if i >= 0:
                            msg_id = buf[i + _ID_LEN:find(b"\r\n", i + _ID_LEN)].strip().decode()
                    out.append(StreamMessage(parts[1].decode(), msg_id, int(toks[5] if v1 else toks[7]),
                                             buf[start + hlen:end]))
                elif headed and buf[start:start + _FC_LEN] == _FLOW_CONTROL:
                    if reply:
                        events.append(("flow", reply))
                elif not (headed and buf[start:start + 12] == b"NATS/1.0 100"):   # heartbeats: nothing to do
                    events.append(("msg", parts[1], buf[start + hlen:end]))
                continue
            line = buf[pos:eol]
            pos = eol + 2
            if line == b"PING":
                events.append(("ping",))
            elif line == b"PONG":
                events.append(("pong",))
            elif line[:5] == b"INFO ":
                events.append(("info", line[5:]))
            elif line[:4] == b"-ERR":
                events.append(("err", line[4:].strip().strip(b"'").decode("utf-8", "replace")))
            # +OK and anything else: nothing to do (verbose is off)
        self.next_cseq = cseq
        self._rest = buf[pos:]
        return bool(events)


def _endpoint(url: str | list[str]) -> natsconn.Endpoint:
    """An endpoint for ``url``; a ``user:password@`` in it (test code, ``ssmd-fast tail --nats``) becomes
    the connection's credentials, never part of what is logged."""
    urls, creds = [], natsconn.Credentials()
    for u in [url] if isinstance(url, str) else url:
        parts = split_nats_url(u)
        if parts.username is not None:
            creds = natsconn.Credentials(kind="user", user=unquote(parts.username),
                                         password=Secret(unquote(parts.password or "")))
            u = u.replace(parts.netloc, parts.netloc.rpartition("@")[2], 1)
        urls.append(u)
    return natsconn.Endpoint(urls=tuple(urls), credentials=creds, name="ssmd-fast reader")


async def read_stream(url: str | list[str] | natsconn.Endpoint, stream: str | None, subject_filter: str = ">",
                      timeout: float = 30.0) -> list[StreamMessage]:
    """Every message stored in ``stream`` (None: the stream that holds ``subject_filter``) under
    ``subject_filter`` when it is called, in stream order.

    Raises ReadError if the server cannot be reached, the stream is not there, a delivery went missing,
    or not all of them arrived within ``timeout`` seconds (the message says how many did)."""
    endpoint = url if isinstance(url, natsconn.Endpoint) else _endpoint(url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    parser = DeliveryParser()
    inbox = b"_INBOX.ssmdread" + secrets.token_hex(6).encode()
    replies: asyncio.Queue = asyncio.Queue()
    arrived = asyncio.Event()
    conn: natsconn.DataConnection | None = None

    def on_events(events: list) -> None:
        for ev in events:
            if ev[0] == "flow":
                conn.write(b"PUB %s 0\r\n\r\n" % ev[1])
            else:
                replies.put_nowait(ev)

    def on_lost(reason: str) -> None:
        replies.put_nowait(("lost", reason))
        arrived.set()

    async def request(subject: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        conn.write(b"PUB %s %s.r %d\r\n%s\r\n" % (subject.encode(), inbox, len(data), data))
        while True:
            ev = await asyncio.wait_for(replies.get(), max(0.0, deadline - loop.time()))
            if ev[0] == "msg" and ev[1] == inbox + b".r":
                if not ev[2]:   # the 503 status of no responders: no JetStream (it read as {}: 0 messages)
                    raise ReadError(f"{subject}: no responders (is JetStream enabled on the server?)")
                try:
                    answer = json.loads(ev[2])
                except ValueError:
                    raise ReadError(f"{subject}: the server's answer is not JSON") from None
                err = answer.get("error")
                if err:
                    raise ReadError(f"{subject}: {err.get('description') or err}")
                return answer
            if ev[0] in ("lost", "err"):
                raise ReadError(f"reading {stream or subject_filter}: {ev[1]}")

    try:
        try:
            conn = await natsconn.connect(endpoint, 0, parser, inbox, timeout=max(0.1, deadline - loop.time()),
                                          on_events=on_events, on_lost=on_lost, on_writable=lambda: None)
        except PublishError as exc:
            raise ReadError(f"cannot connect to {', '.join(endpoint.urls)}: {exc}") from None
        # a subject of its own, subscribed exactly: with only the connection's ``{inbox}.*`` covering
        # ``{inbox}.d``, nats-server 2.15.1 delivered nothing; with both, each delivery came twice
        deliver = inbox + b"-deliveries"
        conn.write(b"SUB %s 2\r\n" % deliver)
        try:
            if stream is None:
                names = (await request("$JS.API.STREAM.NAMES", {"subject": subject_filter})).get("streams") or []
                if not names:
                    raise ReadError(f"a stream for {subject_filter} not found on the server")
                stream = names[0]
            want = {"deliver_policy": "all", "ack_policy": "none", "replay_policy": "instant",
                    "deliver_subject": deliver.decode(), "flow_control": True,
                    "idle_heartbeat": 2_000_000_000, "mem_storage": True, "num_replicas": 1,
                    "inactive_threshold": 10_000_000_000}
            if subject_filter != ">":
                want["filter_subject"] = subject_filter
            info = await request(f"$JS.API.CONSUMER.CREATE.{stream}", {"stream_name": stream, "config": want})
        except TimeoutError:
            raise ReadError(f"reading {stream or subject_filter}: the server did not answer in time") from None
        # created a moment ago: delivered + pending is what matched the filter then
        total = (info.get("num_pending") or 0) + ((info.get("delivered") or {}).get("consumer_seq") or 0)
        got = parser.messages

        def check() -> None:
            if len(got) >= total or parser.gap:
                arrived.set()

        conn.on_read = check
        check()
        try:
            await asyncio.wait_for(arrived.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise ReadError(f"read {len(got):,} of {total:,} messages of {stream} within {timeout:g} s") from None
        if parser.gap:
            raise ReadError(f"reading {stream}: {parser.gap} (after {len(got):,} of {total:,} messages)")
        if len(got) < total:
            raise ReadError(f"read {len(got):,} of {total:,} messages of {stream}: {conn.close_reason}")
        try:   # best effort: the server would remove it anyway once the connection is gone (inactive_threshold)
            await request(f"$JS.API.CONSUMER.DELETE.{stream}.{info['name']}", {})
        except (ReadError, TimeoutError, KeyError):
            pass
        return got[:total]
    finally:
        if conn is not None:
            conn.close("read done")
