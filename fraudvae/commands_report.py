"""The commands that measure a saved model on a file and write a report or a new model: `fraudvae
evaluate`, `compare`, `monitor` and `recalibrate` (`fraudvae.cli` parses their arguments). Each
returns the exit code; library errors propagate to `fraudvae.cli.main`."""

from __future__ import annotations

import argparse
from pathlib import Path

from fraudvae.commands import history_models, labelled, read_format


def evaluate(a: argparse.Namespace) -> int:
    from fraudvae.detector import FraudVAE
    from fraudvae.io import iter_table, read_table
    from fraudvae.report import FIGURES, REPORT, evaluate, summary, write_report
    from fraudvae.writing import check_output_directory

    check_output_directory(a.report, REPORT, "--report", reading=[a.data, a.model])
    fmt = read_format(a)
    det = FraudVAE.load(a.model, device=a.device)
    rows = [labelled(a, [det], read_table(a.data, fmt))] if history_models(a, [det]) \
        else iter_table(a.data, a.chunk_rows, fmt)
    ev = evaluate(det, rows, a.label_column, source=str(a.data),
                  time_column=a.time_column, alerts_per_day=a.alerts_per_day, natural_fraud_rate=a.natural_fraud_rate)
    path = write_report(ev, a.report)
    print(summary(ev))
    figures = [*FIGURES, *(["alerts_per_day.png"] if ev.days is not None else [])]
    print(f"report written to {path}: metrics.json, {', '.join(figures)}")
    return 0


def compare(a: argparse.Namespace) -> int:
    from fraudvae.compare import FIGURES, REPORT, summary, write_compare_report
    from fraudvae.compare import compare as measure
    from fraudvae.detector import FraudVAE
    from fraudvae.errors import ConfigError
    from fraudvae.io import iter_table, read_table
    from fraudvae.writing import check_output_directory

    if len(a.model) != 2:  # before any model is loaded (the library refuses it too)
        raise ConfigError(f"compare takes two models: --model A --model B (got {len(a.model)})")
    check_output_directory(a.report, REPORT, "--report", reading=[a.data, *a.model])
    fmt = read_format(a)
    models = [(str(m), FraudVAE.load(m, device=a.device)) for m in a.model]
    rows = [labelled(a, [d for _, d in models], read_table(a.data, fmt))] if history_models(a, [d for _, d in models]) \
        else iter_table(a.data, a.chunk_rows, fmt)
    c = measure(models, rows, a.label_column, source=str(a.data),
                time_column=a.time_column, alerts_per_day=a.alerts_per_day, alerts=a.alerts)
    path = write_compare_report(c, a.report)
    print(summary(c))
    print(f"report written to {path}: compare.json, {', '.join(FIGURES)}")
    return 0


EXIT_DRIFT = 3  # `fraudvae monitor`: some window is out of bounds (a scheduler's alarm)


def monitor(a: argparse.Namespace) -> int:
    from fraudvae.detector import FraudVAE
    from fraudvae.drift_report import FIGURES, REPORT, table, write_monitor_report
    from fraudvae.drift_report import monitor as measure
    from fraudvae.io import read_table
    from fraudvae.writing import check_output_directory

    check_output_directory(a.report, REPORT, "--report", reading=[a.data, a.model])
    det = FraudVAE.load(a.model, device=a.device)
    df = read_table(a.data, read_format(a))
    if history_models(a, [det]):  # each window's rows with the history of the whole file before them
        df = det.with_history(labelled(a, [det], df))
    report = measure(det, df, window_rows=a.window_rows, window=a.window, time_column=a.time_column,
                     source=str(a.data))
    path = write_monitor_report(report, a.report)
    n = len(report["windows"])
    print(f"model {det.version_} on {a.data}: {report['data']['rows']:,} rows in {n} window{'s' * (n != 1)} "
          f"of {report['data']['window']}; target alert rate {det.threshold_.target:.2%}")
    print(table(report))
    print(f"status: {report['status']} ({report['windows_in_drift']} of {n} window{'s' * (n != 1)} out of "
          f"bounds); report written to {path}: monitor.json, {', '.join(FIGURES)}")
    return EXIT_DRIFT if report["status"] == "drift" else 0


def recalibrate(a: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import numpy as np

    from fraudvae.detector import FraudVAE
    from fraudvae.errors import DataError
    from fraudvae.io import read_table
    from fraudvae.persist import MODEL
    from fraudvae.schema import check_no_label, label_of
    from fraudvae.threshold import rows_needed
    from fraudvae.writing import check_output_directory, file_sha256

    if Path(a.output).resolve() == Path(a.model).resolve():
        raise DataError(f"--output {a.output!r} is the model being recalibrated: write the new one beside it")
    out = check_output_directory(a.output, MODEL, "--output", reading=[a.data, a.model])
    det = FraudVAE.load(a.model, device=a.device)
    id_column = det.schema_.id_column
    df = read_table(a.data, read_format(a), text=[id_column] if id_column else [])
    normal = df
    if a.label_column:
        normal = df[label_of(df, a.label_column) == 0]
    else:  # as fit does: a forgotten label would put its frauds among the rows the cut is set on
        check_no_label(df, "the threshold would be set on its frauds too, as if they were normal rows")
    if len(normal) == 0:
        raise DataError("the data holds no normal rows to calibrate on")
    old = det.threshold_
    method = "alert_rate" if a.alert_rate is not None or (a.target_fpr is None and old.method == "alert_rate") \
        else "target_fpr"
    target = a.alert_rate if a.alert_rate is not None else a.target_fpr if a.target_fpr is not None else old.target
    if len(normal) < (need := rows_needed(target)):
        raise DataError(f"{len(normal):,} normal rows are too few to calibrate a {method.replace('_', ' ')} of "
                        f"{target:g}: it needs at least {need:,} (about 1/target). With fewer, the cut is simply the "
                        f"highest score, and about 1 in {len(normal) + 1} normal rows would be flagged. Give more "
                        f"recent rows, or a larger target")
    scores = det.score_samples(normal)
    parent = det.version_
    lineage = {"recalibrated_on": {"source": str(a.data), "sha256": file_sha256(a.data), "normal_rows": len(normal),
                                   "label_column": a.label_column},
               "at": datetime.now(UTC).isoformat(timespec="seconds")}
    det.calibrate(scores=scores, lineage=lineage,  # the rows are scored once, above
                  target_fpr=target if method == "target_fpr" else None,
                  alert_rate=target if method == "alert_rate" else None)
    det.save(out)
    new = det.threshold_
    print(f"recalibrated model {parent} -> {det.version_} ({method} {target:g}) on {len(normal):,} normal rows "
          f"of {a.data}; written to {out}")
    for name, t in (("old", old), ("new", new)):
        print(f"  {name} threshold {t.value:.4f}: flags {np.mean(scores > t.value):.2%} of these rows")
    return 0
