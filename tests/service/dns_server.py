"""A DNS server the tests own (dnslib), on a loopback UDP port, serving the A records they set
while traffic flows."""

from __future__ import annotations

import threading
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import DNSLogger, DNSServer


class LoopbackDns:
    """`set(name, addresses)` changes what the name resolves to from the next query on.

    A name it knows answers its A records (none: NOERROR without answers) and no AAAA; any
    other name is NXDOMAIN. `stop()` closes the socket (queries fail); `start()` serves on the
    same port again.
    """

    def __init__(self) -> None:
        self.port = 0  # the OS picks one at the first start
        self._records: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._server: DNSServer | None = None

    @property
    def nameserver(self) -> str:
        """The value of CHATSERVICE_DNS_NAMESERVER."""
        return f"127.0.0.1:{self.port}"

    def set(self, name: str, *addresses: str) -> None:
        with self._lock:
            self._records[_absolute(name)] = addresses

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        """dnslib's resolver interface: the reply to one query."""
        reply = request.reply()
        qname = request.q.qname
        with self._lock:
            addresses = self._records.get(str(qname).lower())
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for address in addresses:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(address), ttl=0))
        return reply

    def start(self) -> None:
        quiet = DNSLogger(logf=lambda _line: None)
        self._server = DNSServer(self, address="127.0.0.1", port=self.port, logger=quiet)
        self.port = self._server.server.server_address[1]
        self._server.start_thread()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stop()
        self._server.server.server_close()
        self._server.thread.join(timeout=5)
        self._server = None


def _absolute(name: str) -> str:
    return name.lower().rstrip(".") + "."
