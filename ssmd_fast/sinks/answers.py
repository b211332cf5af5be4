"""ServerAnswers: what the publisher does with the server's rare answers (mixed into ``JetStreamPublisher``,
``nats.py``): rejections dead-lettered and counted by kind, no-responders parked out of the window
(``parked.py``), fast-ingest notices handed to ``FastIngest``, ``-ERR`` lines, and the fall back to
per-message acks when the server cannot batch.
"""

from __future__ import annotations

import asyncio
import logging

from ssmd_fast.errors import PublishError, StorageError
from ssmd_fast.events import StatusEvent
from ssmd_fast.sinks import framing
from ssmd_fast.sinks.spill_store import SPILL
from ssmd_fast.sinks.stream import provision

log = logging.getLogger("ssmd_fast.sinks.nats")   # the publisher's log: operators follow one name

RETRYABLE_ERR_CODES = {10008}  # "JetStream system temporarily unavailable"
FULL_DESCRIPTIONS = ("maximum messages", "maximum bytes", "maximum messages per subject")
STREAM_RECHECK = 5.0    # provision: create: how often messages without a stream look for it, to create it again


def rejection_kind(code: int, err_code: int, description: str) -> str | None:
    """The counter a JetStream error reply goes to, or None when it is worth resending."""
    if err_code in RETRYABLE_ERR_CODES:
        return None
    d = description.lower()
    if any(s in d for s in FULL_DESCRIPTIONS):
        return "stream_full"
    if "message size" in d or err_code == 10054:
        return "too_large"
    if "stream not found" in d or "no stream" in d:
        return "no_stream"
    return "error"


class ServerAnswers:
    """The answer-handling half of ``JetStreamPublisher`` (state and I/O live there)."""

    def _dead_letter(self, items: list, kind: str, why: str = "") -> None:
        """Keep rejected messages in the dead-letter file; a log line and a ``dead_letter`` event at most
        every 10 s per kind (a full stream rejects thousands a second), each saying how many so far."""
        if not items:
            return
        self.rejected[kind] = self.rejected.get(kind, 0) + len(items)
        try:
            self.dead.append_many(items)
            self.counters["dead_lettered"] += len(items)
        except StorageError as exc:
            self._count_lost(len(items), f"rejected ({kind}) and the dead-letter file failed")
            self._fail(f"dead-letter write failed: {exc}")
            return
        self.dead_reasons.note(kind, why, items)
        n = self.rejected[kind]
        example = f"e.g. {items[0][0].decode('utf-8', 'replace')}"
        what = f"{why}; {example}" if why else example
        # the format names the kind only: one line per kind per interval, the count in the arguments
        if self._throttle.log(logging.WARNING, f"NATS rejected messages ({kind}): dead-lettered, %s so far; %s",
                              f"{n:,}", what):
            self._emit(StatusEvent("dead_letter", self.instance, detail=f"{kind}: {n:,} so far; {what}"))
            self._write_reasons(kind)

    def _write_reasons(self, kind: str | None = None) -> None:
        """The reasons line(s) beside the dead letters (dead_reasons.py); a failure is the run's, not a loss:
        the letters themselves are stored."""
        try:
            self.dead_reasons.write(kind)
        except StorageError as exc:
            self._fail(f"dead-letter reasons write failed: {exc}", warn_once=True)

    def _dead_letter_oversized(self) -> None:
        items = self.ring.pop_oversized()
        if self.dead is None:
            self._count_lost(len(items), "too large for the server")
            return
        self._dead_letter(items, "too_large", self._too_large_why())

    def _too_large_why(self) -> str:
        return f"header and payload over the server's max_payload ({self.ring.max_payload:,} bytes)"

    def _reject(self, pseq: int, kind: str, why: str = "") -> None:
        msg = self.ring.reject(pseq)
        if msg is not None:
            self._dead_letter([msg[:3]], kind, why)

    def _park(self, pseq: int) -> None:
        """No stream stores this message's subject now: out of the window, retried later (parked.py)."""
        msg = self.ring.park(pseq)
        if msg is not None and not self.parked.park(msg[:3], self.clock()):
            self._dead_letter([msg[:3]], "no_stream", self._no_stream_why())
        if self.cfg.provision == "create" and self.provision_stream:
            self._look_for_stream()     # deleted while running: created again

    def _unpark(self, now: float) -> None:
        retry, dead = self.parked.due(now)
        if dead:
            self._dead_letter(dead, "no_stream", self._no_stream_why())
        for subject, msg_id, payload in retry:
            if self.store == SPILL:
                self._to_spill([(subject, msg_id, payload)])
            else:
                self.ring.add_message(subject, msg_id, payload)

    def _look_for_stream(self) -> None:
        """Messages found no stream (no responders): with ``provision: create``, create it again if it was
        deleted, at most every ``STREAM_RECHECK`` seconds, in a task (the parked messages are retried on their
        schedule and stored once it exists)."""
        now = self.clock()
        if (self._stream_check is not None and not self._stream_check.done()) or self._closing \
                or now - self._stream_checked_at < STREAM_RECHECK:
            return
        self._stream_checked_at = now
        self._stream_check = asyncio.create_task(self._recreate_stream(), name="nats-stream-check")

    async def _recreate_stream(self) -> None:
        try:
            report = await provision(self.cfg, self.endpoint, timeout=self.cfg.connect_timeout,
                                     only_if_missing=True)
        except PublishError as exc:
            self._throttle.log(logging.WARNING, "NATS: no stream takes the messages, and it cannot be "
                               "looked for or created: %s", str(exc))
            return
        if report is not None:
            log.warning("NATS: stream %s was gone (deleted while the connector ran): created again; the %d "
                        "messages waiting for it are retried", self.cfg.stream, len(self.parked))
            self.stream_report = report

    def _no_stream_why(self) -> str:
        return f"no stream stored their subjects for {self.cfg.retry_horizon:g} s (transport.retry_horizon)"

    def _on_events(self, events: list) -> None:
        conn = self.conn   # every answer here came on it (a lame-duck notice closes it on the way)
        for ev in events:
            kind = ev[0]
            if kind == "ack_error" or kind == "fi_err":
                _, pseq, code, err_code, desc = ev
                if pseq:
                    rk = rejection_kind(code, err_code, desc)
                    if rk is not None:
                        self._reject(pseq, rk, f"{desc} (err_code {err_code})" if err_code else desc)
                    elif kind == "fi_err":
                        self.fast.resend([pseq])   # held by the notice: no later flow ack settles it
            elif kind == "lame_duck":
                self._on_lame_duck()
            elif kind == "no_responders":
                if conn is not None and conn.lame_duck:
                    continue   # its JetStream stopped, not the stream: resent in order on the next connection
                self._park(ev[1])
                if self.ring.fast:
                    self.fast.trouble()
            elif kind == "fi_gap":
                self.fast.on_gap(*ev[1:])
            elif kind == "fi_done":
                self.fast.on_done(*ev[1:])
            elif kind == "fi_error":
                if self.ring.fast and not self.fast.on_error(*ev[1:]):
                    self._per_message(f"the server answered a batch with {ev[4]} ({ev[5]})")
            elif kind == "err":
                self._on_server_error(ev[1])
            elif kind == "msg":
                log.debug("NATS: unexpected message on %r", ev[1])
        if self.ring.fast and self.ring.gate_starts:
            self.fast.drop_dead_starts()
        self._after_acks()
        self._pump()

    def _on_lame_duck(self) -> None:
        """nats-server entered lame-duck mode: it stopped its JetStream and will close this connection after
        its grace period. Leave now (another server of the URL list, or this one once restarted): what is
        unacked stays in the ring and goes out first on the next connection, in order, with its ids."""
        self.counters["lame_duck"] += 1
        log.warning("NATS server entered lame-duck mode: reconnecting (%d messages in flight are resent)",
                    self.ring.inflight)
        if self.conn is not None:
            self.conn.close("the server entered lame-duck mode")

    def _on_server_error(self, text: str) -> None:
        low = text.lower()
        if "permissions violation for publish" in low:
            subject = text.split(" to ", 1)[-1].strip().strip('"').encode()
            if self.ring.fast:
                self.fast.deny(subject)   # the batch's gap notice names the message
                return
            pseq = self.ring.find_sent(subject)
            if pseq:
                self._reject(pseq, "permissions", text)
            return
        log.warning("NATS server error on the data connection: %s", text)

    def _per_message(self, why: str) -> None:
        """Fast-ingest batches cannot be used here: reframe for per-message acks, resend what was sent."""
        if not self.ring.fast:
            return
        log.warning("NATS publisher: per-message acks from now on: %s", why)
        self.fast.reset()
        self.ring.set_mode(framing.MODE_ACK)
        self.per_message_why = why
        if self.conn is not None:
            data = self.ring.resend_all(self.clock())
            if data is not None:
                self.conn.write(data)
                self.counters["resend_writes"] += 1
