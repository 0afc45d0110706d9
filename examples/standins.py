"""Local stand-ins for the example jobs: a bank, a ledger API, services to health-check, a
report inbox, and an SMTP server — all on 127.0.0.1.

Run it in a terminal of its own and leave it running::

    python examples/standins.py                 # HTTP on :8701, SMTP on :8025

HTTP routes (``http://127.0.0.1:8701``):

* ``GET  /bank/settlements/<YYYY-MM-DD>.csv`` — the bank's settlement file of a day (CSV:
  ``id,merchant,amount,currency``), the same rows for the same day every time;
* ``POST /ledger/batches`` — the ledger API: books a batch of settlement rows; needs
  ``Authorization: Bearer <ledger token>`` (``--ledger-token``, default ``demo-ledger-token``)
  and honours ``Idempotency-Key`` (a retried batch is booked once);
* ``GET  /status`` — the services to sweep; ``GET /health/<service>`` — one service's health
  (``--down NAME`` makes a service answer 503);
* ``POST /reports/monthly`` — the report inbox;
* ``GET  /_recorded`` — everything received so far (ledger batches, reports, e-mails).

The SMTP server accepts any message (no TLS, no AUTH) and keeps it in memory; ``/_recorded``
lists them. Nothing is written to disk.

The tests start the same stand-ins in process on free ports with :func:`start_standins`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("standins")

SERVICES = ["payments", "ledger", "cards", "notify", "fx-rates", "kyc"]
MERCHANTS = ["Bun Cha Huong Lien", "Pho Thin", "Banh Mi 25", "Cong Caphe", "Highlands"]


def settlement_rows(day: date) -> list[dict[str, Any]]:
    """The settlement rows of a day: 5 to 12 rows, derived from the date (stable)."""
    seed = int(hashlib.sha256(day.isoformat().encode()).hexdigest(), 16)
    count = 5 + seed % 8
    rows = []
    for index in range(count):
        part = (seed >> (index * 8)) & 0xFFFF
        rows.append(
            {
                "id": f"{day:%Y%m%d}-{index + 1:03d}",
                "merchant": MERCHANTS[part % len(MERCHANTS)],
                "amount": 10_000 + (part % 900) * 1_000,
                "currency": "VND",
            }
        )
    return rows


def settlement_csv(day: date) -> str:
    """The CSV text of a day's settlement file."""
    lines = ["id,merchant,amount,currency"]
    for row in settlement_rows(day):
        lines.append(f"{row['id']},{row['merchant']},{row['amount']},{row['currency']}")
    return "\n".join(lines) + "\n"


@dataclass
class Recorded:
    """What the stand-ins received."""

    batches: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    mails: list[dict[str, Any]] = field(default_factory=list)
    health_checks: list[str] = field(default_factory=list)
    idempotency_keys: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "reports": self.reports,
            "mails": self.mails,
            "health_checks": self.health_checks,
        }


def build_app(
    recorded: Recorded, *, ledger_token: str, down: Sequence[str] = ()
) -> web.Application:
    """The HTTP stand-ins."""
    routes = web.RouteTableDef()

    @routes.get("/bank/settlements/{day}.csv")
    async def settlement(request: web.Request) -> web.Response:
        try:
            day = date.fromisoformat(request.match_info["day"])
        except ValueError:
            return web.json_response(
                {"error": "expected /bank/settlements/YYYY-MM-DD.csv"}, status=404
            )
        return web.Response(text=settlement_csv(day), content_type="text/csv")

    @routes.post("/ledger/batches")
    async def ledger(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {ledger_token}":
            return web.json_response({"error": "bad or missing bearer token"}, status=401)
        key = request.headers.get("Idempotency-Key", "")
        if key and key in recorded.idempotency_keys:
            return web.json_response(recorded.idempotency_keys[key])
        body = await request.json()
        rows = body.get("rows") or []
        answer = {
            "batch": len(recorded.batches) + 1,
            "accepted": len(rows),
            "total": sum(int(r.get("amount", 0)) for r in rows),
        }
        recorded.batches.append({"request": body, "answer": answer})
        if key:
            recorded.idempotency_keys[key] = answer
        return web.json_response(answer, status=201)

    @routes.get("/status")
    async def status(request: web.Request) -> web.Response:
        return web.json_response({"services": SERVICES})

    @routes.get("/health/{service}")
    async def health(request: web.Request) -> web.Response:
        service = request.match_info["service"]
        recorded.health_checks.append(service)
        if service not in SERVICES:
            return web.json_response({"error": "unknown service"}, status=404)
        if service in down:
            return web.json_response({"service": service, "status": "down"}, status=503)
        return web.json_response({"service": service, "status": "up"})

    @routes.post("/reports/monthly")
    async def report(request: web.Request) -> web.Response:
        recorded.reports.append(await request.json())
        return web.json_response({"stored": len(recorded.reports)}, status=201)

    @routes.get("/_recorded")
    async def dump(request: web.Request) -> web.Response:
        return web.json_response(recorded.as_json())

    app = web.Application()
    app.add_routes(routes)
    return app


class _MailHandler:
    def __init__(self, recorded: Recorded) -> None:
        self.recorded = recorded

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain", "html"))
        self.recorded.mails.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "subject": str(message["Subject"] or ""),
                "text": body.get_content() if body is not None else "",
                "attachments": [
                    {"filename": part.get_filename(), "size": len(part.get_content())}
                    for part in message.iter_attachments()
                ],
            }
        )
        return "250 OK"


@dataclass
class StandIns:
    """Running stand-ins (from :func:`start_standins`)."""

    http_url: str
    smtp_port: int
    recorded: Recorded
    _runner: web.AppRunner
    _smtp: asyncio.AbstractServer

    async def stop(self) -> None:
        """Stop both servers."""
        self._smtp.close()
        await self._smtp.wait_closed()
        await self._runner.cleanup()


async def start_standins(
    *,
    http_port: int = 0,
    smtp_port: int = 0,
    ledger_token: str = "demo-ledger-token",
    down: Sequence[str] = (),
) -> StandIns:
    """Start the HTTP and SMTP stand-ins on 127.0.0.1 (port 0: a free port)."""
    recorded = Recorded()
    runner = web.AppRunner(
        build_app(recorded, ledger_token=ledger_token, down=down), access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", http_port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    handler = _MailHandler(recorded)
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(
        lambda: SMTP(handler, hostname="standins.local", loop=loop), "127.0.0.1", smtp_port
    )
    actual_smtp = smtp.sockets[0].getsockname()[1]
    return StandIns(
        http_url=f"http://127.0.0.1:{port}",
        smtp_port=actual_smtp,
        recorded=recorded,
        _runner=runner,
        _smtp=smtp,
    )


async def _main(args: argparse.Namespace) -> None:
    standins = await start_standins(
        http_port=args.http_port,
        smtp_port=args.smtp_port,
        ledger_token=args.ledger_token,
        down=args.down,
    )
    print(f"HTTP stand-ins on {standins.http_url} (see {standins.http_url}/_recorded)")
    print(f"SMTP stand-in on 127.0.0.1:{standins.smtp_port}")
    print("Ctrl-C to stop")
    try:
        await asyncio.Event().wait()
    finally:
        await standins.stop()


def main() -> None:
    """Entry point: ``python examples/standins.py``."""
    parser = argparse.ArgumentParser(description="Local stand-ins for the example jobs.")
    parser.add_argument("--http-port", type=int, default=8701)
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--ledger-token", default="demo-ledger-token")
    parser.add_argument("--down", action="append", default=[], help="a service that is down")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
