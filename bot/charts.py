"""Consumption charts: a PNG of a customer's monthly kWh, served at a signed, expiring URL
(`GET /charts/consumption/{code}.png?exp=...&sig=...`) that the bill action hands out."""

from __future__ import annotations

import asyncio
import io

from aiohttp import web

from backend import signing
from backend.services import billing
from backend.services.billing import BillInfo

MONTHS = 12


def chart_subject(code: str) -> str:
    return f"consumption:{code}"


def render_png(code: str, bills: list[BillInfo]) -> bytes:
    """A bar chart, oldest month first; matplotlib with the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ordered = sorted(bills, key=lambda b: b.period)
    figure = Figure(figsize=(7, 3.2), dpi=100)
    axes = figure.subplots()
    labels = [f"{b.period[5:]}/{b.period[2:4]}" for b in ordered]
    colours = ["#c0392b" if b.status != "paid" else "#2e86c1" for b in ordered]
    bars = axes.bar(labels, [b.kwh for b in ordered], color=colours)
    axes.bar_label(bars, fontsize=8)
    axes.set_title(f"{code}: kWh")
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


async def consumption_chart(request: web.Request) -> web.Response:
    code = request.match_info["code"].upper()
    if not signing.verify(chart_subject(code), request.query.get("exp", ""), request.query.get("sig", "")):
        return web.json_response({"error": "this chart link is invalid or has expired"}, status=403)
    bills = await billing.bill_history(code, MONTHS)
    if not bills:
        return web.json_response({"error": "no bills"}, status=404)
    # Drawing takes tens of milliseconds of CPU: keep it off the event loop.
    png = await asyncio.get_running_loop().run_in_executor(None, render_png, code, bills)
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, max-age=300"})


def register_chart_routes(app: web.Application) -> None:
    app.router.add_get("/charts/consumption/{code}.png", consumption_chart)
