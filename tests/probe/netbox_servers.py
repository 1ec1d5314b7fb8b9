"""Servers of the network-in-a-box, one process per namespace role (run as a script).

``sites CONFIG``: the authoritative DNS server for the test names and the HTTP/HTTPS
web servers of every site (one page per Host). ``middle CONFIG``: the middlebox DNS
proxy of the censored network (forges some answers, or answers blocks with EDE and SDE
itself as a dishonest operator would) and the blockpage server that DNAT'ed HTTP lands
on. Each prints ``ready`` on stdout once it listens.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def page_for(name: str) -> bytes:
    """The deterministic page of a site (its title is its name)."""
    filler = ("<p>" + f"Content of {name}. " * 20 + "</p>\n") * 5
    head = f"<!doctype html><html><head><title>Site {name}</title></head>"
    return f"{head}<body>{filler}</body></html>".encode()


BLOCKPAGE = (
    b"<!doctype html><html><head><title>Access to this site is restricted</title></head>"
    b"<body><h1>This website has been blocked</h1><p>By the network operator.</p></body></html>"
)


LEGAL = (
    b"<!doctype html><html><head><title>451 Unavailable For Legal Reasons</title></head>"
    b"<body><p>Withheld under order 77.</p></body></html>"
)


class DNSProtocol(asyncio.DatagramProtocol):
    """UDP front end calling an async answer function."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._reply(data, addr))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        wire = await self.answer(data)
        if wire is not None and self.transport is not None:
            self.transport.sendto(wire, addr)


async def serve_dns(host: str, port: int, answer: Any) -> None:
    """Serve ``answer(wire) -> wire | None`` over UDP and TCP on host:port."""
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: DNSProtocol(answer), local_addr=(host, port))

    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                wire = await answer(await reader.readexactly(size))
                if wire is None:
                    break
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    await asyncio.start_server(tcp, host, port)


async def serve_http(
    host: str, port: int, respond: Any, context: ssl.SSLContext | None = None
) -> None:
    """A tiny HTTP/1.1 server: ``respond(host_header) -> (status, extra_headers, body)``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("iso-8859-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (x.partition(":") for x in lines[1:] if x)
            }
            status, extra, body = respond(headers.get("host", "").split(":")[0].lower())
            reason = {200: "OK", 404: "Not Found", 451: "Unavailable For Legal Reasons"}.get(
                status, "OK"
            )
            out = f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            out += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            out += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(out.encode() + body)
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            TimeoutError,
            ssl.SSLError,
        ):
            pass
        finally:
            writer.close()

    await asyncio.start_server(handle, host, port, ssl=context, backlog=1024)


async def sites(config: dict[str, Any]) -> None:
    """Authoritative DNS for ``config['zone']`` (name -> address) plus the web servers."""
    zone: dict[str, str] = config["zone"]

    async def answer(wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        if name not in zone:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 300, "IN", "A", zone[name]))
        return response.to_wire()

    def respond(host: str) -> tuple[int, dict[str, str], bytes]:
        if host in zone:
            return 200, {}, page_for(host)
        return 404, {}, b"<html><head><title>Not found</title></head></html>"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config["cert"], config["key"])
    await serve_dns(config["dns"], 53, answer)
    await serve_http("0.0.0.0", 80, respond)
    await serve_http("0.0.0.0", 443, respond, context)


async def middle(config: dict[str, Any]) -> None:
    """The censored network's middlebox: DNS proxy with forgeries and its own blocks."""
    upstream_host, upstream_port = config["upstream"].rsplit(":", 1)
    forge: dict[str, str] = config.get("forge", {})
    blocks: dict[str, dict[str, Any]] = config.get("blocks", {})

    async def answer(wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        if name in forge:
            response = dns.message.make_response(query)
            if question.rdtype == dns.rdatatype.A:
                response.answer.append(
                    dns.rrset.from_text(question.name, 60, "IN", "A", forge[name])
                )
            return response.to_wire()
        if name in blocks:
            spec = blocks[name]
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.NXDOMAIN)
            text = json.dumps(spec["sde"], separators=(",", ":"))
            response.use_edns(0, options=[dns.edns.EDEOption(spec["ede"], text)])
            return response.to_wire()
        try:
            reply = await dns.asyncquery.udp(
                query, upstream_host, port=int(upstream_port), timeout=3
            )
        except Exception:
            return None
        return reply.to_wire()

    await serve_dns(config["listen"], 53, answer)
    await serve_http(
        config["listen"], config.get("blockpage_port", 8081), lambda _h: (200, {}, BLOCKPAGE)
    )
    # An RFC 7725 block: 451 with a Link to the (here: unpublished) blocking authority.
    link = {"Link": '<https://blocker.example/orders/77>; rel="blocked-by"'}
    await serve_http(
        config["listen"], config.get("legal_port", 8082), lambda _h: (451, link, LEGAL)
    )


def main() -> None:
    """Run one role from its JSON config until killed."""
    role, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)

    async def run() -> None:
        await (sites(config) if role == "sites" else middle(config))
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
