"""`fraudvae monitor`: a file scored window by window (`fraudvae.monitor`'s measures), written as
``monitor.json`` and figures, summed up in a table for the terminal."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from fraudvae.detector import FraudVAE
from fraudvae.errors import ConfigError, DataError
from fraudvae.monitor import MonitorConfig, summarise, window_stats
from fraudvae.readers import time_column as time_column_of
from fraudvae.report import write_directory
from fraudvae.writing import OutputDirectory

FIGURES = ("alert_rate.png", "p_values.png", "column_drift.png")
REPORT = OutputDirectory("a monitor report", "monitor.json", frozenset({"monitor.json", *FIGURES}), "monitor")


def windows_of(df: pd.DataFrame, window_rows: int | None, window: str | None,
               time_column: str | None) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) of each window: `window_rows` consecutive rows, or a time span (``1d``, ``6h``,
    ``30min``, ``1w``) of `time_column`, in time order. Time windows start at midnight of the first
    row's day (so ``1d`` windows are calendar days) and are labelled by their start in the data's own
    clock (times are read as `fit` reads them: the wall clock as written)."""
    if window is None:
        size = window_rows or 10_000
        return [(f"rows {i:,}-{min(i + size, len(df)) - 1:,}", df.iloc[i: i + size]) for i in range(0, len(df), size)]
    if time_column is None:
        raise ConfigError("--window needs --time-column (the column holding each row's time)")
    if time_column not in df.columns:
        raise DataError(f"time column {time_column!r} is not a column of the data", column=time_column)
    span = window_span(window)
    when = time_column_of(df[time_column], time_column)
    origin = when.min().normalize()
    start = origin + ((when - origin) // span) * span
    return [(str(s), rows) for s, rows in df.groupby(start.to_numpy(), sort=True)]


SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(w|W|d|D|h|H|min|m|s|S)")  # "M" (a month? a minute?) is refused


def window_span(window: str) -> pd.Timedelta:
    """A window's length from text such as ``1d``, ``6h``, ``30min``, ``90s`` or ``2w``. Zero,
    negative and unreadable spans are a `ConfigError` saying what is accepted."""
    m = SPAN.fullmatch(window.strip())
    if m is None:
        sign = "zero or negative" if window.strip().startswith("-") else "not a time span"
        raise ConfigError(f"--window {window!r} is {sign}: give a positive span such as 1d, 6h, 30min or 90s "
                          f"(units w, d, h, min, s)")
    unit = {"w": "W", "d": "D", "h": "h", "min": "min", "m": "min", "s": "s"}[m.group(2).lower()]
    span = pd.Timedelta(float(m.group(1)), unit=unit)
    if span <= pd.Timedelta(0):
        raise ConfigError(f"--window {window!r} is zero: give a positive span such as 1d, 6h, 30min or 90s")
    return span


def monitor(det: FraudVAE, df: pd.DataFrame, *, window_rows: int | None = None, window: str | None = None,
            time_column: str | None = None, source: str | None = None,
            config: MonitorConfig | None = None) -> dict:
    """Score `df` and measure each window against the model's validation rows. JSON-ready."""
    config = config or MonitorConfig()
    parts = windows_of(df, window_rows, window, time_column)
    t = det.threshold_
    target = t.target  # the share of normal rows the threshold lets through, at most
    columns = det.schema_.names()
    windows, p_all = [], []
    for label, rows in parts:
        contributions = det.explain(rows)
        scores = contributions.sum(axis=1).to_numpy()  # the columns and the latent term sum to the score
        p = t.p_values(scores)
        p_all.append(p)
        stats = window_stats(scores > t.value, p, contributions[columns].to_numpy(), columns, det.baseline_, target,
                             config, calibration_rows=len(t.validation_scores), calibration_above=t.above)
        windows.append({"window": label, **stats})
    p_values = np.concatenate(p_all) if p_all else np.zeros(0)
    counts, _ = np.histogram(p_values, bins=20, range=(0, 1))
    return {
        "model": {"version": det.version_, "threshold": t.value, "threshold_method": t.method,
                  "threshold_target": t.target},
        "data": {"source": source, "rows": len(df), "windows": len(windows),
                 "window": window or f"{window_rows or 10_000} rows", "time_column": time_column},
        "alpha": config.alpha,
        **summarise(windows),
        "windows": windows,
        "p_value_histogram": {"bins": 20, "counts": counts.tolist()},
    }


def write_monitor_report(report: dict, path: str | Path) -> Path:
    """``monitor.json`` and `FIGURES` into directory `path` (atomically). Returns the directory."""
    from matplotlib.axes import Axes

    ws = report["windows"]
    x = np.arange(len(ws))
    title = f"model {report['model']['version']} on {report['data']['source'] or 'the data'}"

    def alert_rate(ax: Axes) -> None:
        rate = [w["alert_rate"] or 0.0 for w in ws]
        lo, hi = zip(*(w["alert_rate_interval"] for w in ws), strict=True) if ws else ((), ())
        ax.fill_between(x, lo, hi, alpha=0.25, label=f"{1 - report['alpha']:.1%} interval")
        expected = [w["alert_rate_expected"] for w in ws]
        if ws and all(e is not None for e in expected):
            low, high = zip(*expected, strict=True)
            ax.plot(x, low, color="gray", ls=":", label="range normal rows give")
            ax.plot(x, high, color="gray", ls=":")
        ax.plot(x, rate, "o-", label="alert rate")
        ax.axhline(report["model"]["threshold_target"], color="black", ls="--", label="target")
        for i, w in enumerate(ws):
            if w["status"] == "drift":
                ax.axvspan(i - 0.5, i + 0.5, color="tab:red", alpha=0.08)
        ax.set(xlabel="window", ylabel="share of rows flagged", title="alert rate per window (red: drift)")
        ax.legend()

    def p_values(ax: Axes) -> None:
        counts = np.asarray(report["p_value_histogram"]["counts"])
        edges = np.linspace(0, 1, len(counts) + 1)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", alpha=0.7, label="rows")
        ax.axhline(counts.sum() / len(counts), color="black", ls="--", label="uniform (no drift)")
        ax.set(xlabel="conformal p-value", ylabel="rows", title="p-values against uniform")
        ax.legend()

    def column_drift(ax: Axes) -> None:
        m = np.array([[np.nan if v is None else v for v in row] for row in report["drift_matrix"]], dtype=float)
        m = m.reshape(len(ws), len(report["columns"]))
        image = ax.imshow(m.T, aspect="auto", cmap="coolwarm", vmin=-np.nanmax(np.abs(m), initial=1e-9),
                          vmax=np.nanmax(np.abs(m), initial=1e-9))
        ax.set_yticks(range(len(report["columns"])), report["columns"])
        ax.set(xlabel="window", title="median contribution minus validation median (nats)")
        ax.figure.colorbar(image, ax=ax, label="nats")

    draw = dict(zip(FIGURES, (alert_rate, p_values, column_drift), strict=True))
    return write_directory(path, REPORT, report, draw, title, size=(7.5, 4.8))


def table(report: dict) -> str:
    """The windows, a line each, for a terminal."""
    lines = [f"{'window':<28}{'rows':>8}{'alerts':>8}{'rate':>8}  {'interval':<18}{'expected':<18}{'KS p':>9}  "
             f"{'status':<7}top columns"]
    for w in report["windows"]:
        lo, hi = w["alert_rate_interval"]
        expected = "-" if w.get("alert_rate_expected") is None else "[{:.2%}, {:.2%}]".format(*w["alert_rate_expected"])
        top = ", ".join(f"{c['column']} {c['shift_nats']:+.2f}" for c in w["top_drifting_columns"][:3]
                        if c["shift_nats"] is not None)
        ks = "-" if w["ks_p_value"] is None else f"{w['ks_p_value']:.3g}"
        rate = 0.0 if w["alert_rate"] is None else w["alert_rate"]
        interval = f"[{lo:.2%}, {hi:.2%}]"
        lines.append(f"{w['window'][:27]:<28}{w['rows']:>8,}{w['alerts']:>8,}{rate:>8.2%}  {interval:<18}"
                     f"{expected:<18}{ks:>9}  "
                     f"{w['status']:<7}{top}")
    return "\n".join(lines)
