"""`fraudvae fit | score | evaluate | sample | sign | example-data`: the command line. Errors: one line
on stderr, exit 2.

Nothing heavy is imported before the arguments are parsed (torch takes seconds to import), so
`--help` and `--version` answer at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from fraudvae import __version__
from fraudvae.errors import FraudVAEError

EXIT_BAD_INPUT = 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process the signal stopped
FLOAT_FORMAT = "%.10g"  # ten significant digits: scores exact to 1e-9 relative, no 17-digit noise


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM: remove the temporary files being written and stop at once. (Raising an exception
    instead would unwind through whatever runs at that instant, an import's callback included,
    where it can be swallowed.)"""
    from fraudvae.io import remove_temporaries

    remove_temporaries()
    os.write(2, b"fraudvae: terminated (SIGTERM); nothing written\n")
    os._exit(EXIT_TERMINATED)


def _read_format(a: argparse.Namespace):  # -> CsvFormat | None
    from fraudvae.io import csv_format, is_parquet

    return None if is_parquet(a.data) else csv_format(a.data, a.sep, a.encoding)


def _fit(a: argparse.Namespace) -> int:
    from fraudvae.distributed import process_group

    # under torchrun: every process reads the file and fits the same preprocessing, trains on its
    # share of the rows (DDP), and rank 0 alone writes the model and reports
    with process_group(a.device) as rank:
        return _fit_in_process(a, rank)


def _fit_in_process(a: argparse.Namespace, rank: int) -> int:
    from tqdm import tqdm

    from fraudvae.detector import FraudVAE
    from fraudvae.io import read_table

    fmt = _read_format(a)
    df = read_table(a.data, fmt, skip=a.drop)
    skipped = df.attrs.get("skipped", [])  # nested Parquet columns named in --drop: never read
    det = FraudVAE(label_column=a.label_column, id_column=a.id_column,
                   drop=tuple(d for d in a.drop if d not in skipped), categorical=tuple(a.categorical),
                   time_columns=tuple(a.time_column), label_check=not a.no_label_check,
                   target_fpr=None if a.alert_rate else a.target_fpr,
                   alert_rate=a.alert_rate, seed=a.seed, epochs=a.epochs, batch_size=a.batch_size,
                   beta=a.beta, point_mass_share=a.point_mass_share, device=a.device,
                   **({} if a.validation_fraction is None else {"validation_fraction": a.validation_fraction}),
                   **({} if a.validation is None else {"validation": a.validation}))
    bar = tqdm(desc="training", unit="epoch", disable=a.quiet or rank > 0 or None, leave=False)

    def progress(epoch: int, total: int, losses: dict) -> None:
        bar.total = total
        bar.set_postfix(train=f"{losses['train']:.3f}", val=f"{losses['val']:.3f}", refresh=False)
        bar.update(1)

    try:
        det.fit(df, progress=progress)
    finally:
        bar.close()
    if rank > 0:
        return 0
    path = det.save(a.model)
    m = det.metrics_
    roles: dict[str, list[str]] = {}
    for c in det.schema_.columns:
        roles.setdefault(c.role, []).append(c.name)
    print(f"read {a.data}: {len(df)} rows, {df.shape[1]} columns" + (f"; {fmt.describe()}" if fmt else " (Parquet)"))
    print(f"model {det.version_} saved to {path}")
    print(f"rows: {m['rows']} ({m['normal_rows']} normal, {m['fraud_rows']} labelled fraud kept out of training); "
          f"trained on {m['train_rows']}, validated on {m['validation_rows']}")
    for role, names in roles.items():
        if role == "time":  # the clock itself is never an input: its hour and weekday are
            names = [f"{n} (as hour of day and day of week)" for n in names]
        print(f"  {role:<12} {', '.join(names)}")
    for name in skipped:
        print(f"  {'left out':<12} {name}: dropped on request (not read)")
    for name, reason in det.schema_.dropped.items():
        print(f"  {'left out':<12} {name}: {reason}")
    print(f"epochs: {m['epochs_run']} (best {m['best_epoch']}; {m['stop']}); "
          f"validation loss {m['validation_loss']:.4f} nats")
    t = det.threshold_
    print(f"threshold: {t.value:.4f} ({t.method} {t.target:g} on {len(t.validation_scores)} validation normals)")
    if "at_threshold" in m:
        s = m["at_threshold"]
        print(f"at threshold ({s['evaluated_on']}): precision {s['precision']:.3f} recall {s['recall']:.3f} "
              f"F1 {s['f1']:.3f} FPR {s['fpr']:.4f}; AUC-ROC {s.get('auc_roc', float('nan')):.3f} "
              f"AP {s.get('average_precision', float('nan')):.3f}")
    return 0


def _score(a: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    from fraudvae.detector import FraudVAE
    from fraudvae.errors import DataError
    from fraudvae.io import atomic_file, check_writable, iter_table

    to_stdout = a.output == "-"
    out_path = None
    if not to_stdout:  # refused before any work: the input, a directory, a place that cannot be written
        out_path = check_writable(a.output)
        data = Path(a.data)
        if out_path == data.resolve() or (out_path.exists() and data.exists() and os.path.samefile(out_path, data)):
            raise DataError(f"--output {a.output!r} is the input file: choose another name (the scores never "
                            "overwrite the data)")
    fmt = _read_format(a)
    det = FraudVAE.load(a.model, device=a.device)
    wanted = {*det.schema_.names(), det.schema_.id_column} - {None}
    n = flagged = 0
    top: list[pd.DataFrame] = []

    def write(res: pd.DataFrame, target) -> None:
        res.to_csv(target, mode="a", header=n == 0, index=False, float_format=FLOAT_FORMAT)

    with tqdm(desc="scoring", unit="row", disable=a.quiet or None, leave=False) as bar:
        sink = _stdout_sink() if to_stdout else atomic_file(out_path)
        with sink as target:
            for chunk in iter_table(a.data, a.chunk_rows, fmt, columns=wanted):  # memory does not grow with the file
                res = det.score(chunk)
                res["flag"] = res["flag"].astype(int)
                write(res, target)
                n += len(res)
                flagged += int(res["flag"].sum())
                top.append(res.nlargest(5, "score"))
                bar.update(len(res))
    # the report goes to stderr: the scores are the output (stdout stays clean for pipelines)
    report = [f"scored {n} rows with model {det.version_}: {flagged} flagged ({flagged / max(n, 1):.2%}) "
              f"at threshold {det.threshold_.value:.4f}; written to {'stdout' if to_stdout else out_path}"]
    if fmt is not None and fmt.sep != ",":
        report.append(f"read {a.data} with {fmt.describe()}")
    if flagged:
        report += ["most suspicious rows:", pd.concat(top).nlargest(5, "score").to_string(index=False)]
    print("\n".join(report), file=sys.stderr)
    return 0


class _stdout_sink:
    """`--output -`: scores to stdout as they come (nothing to make atomic). Flushed on the way out,
    inside `main`, so a reader that has gone is met there (quietly), not at interpreter exit."""

    def __enter__(self):
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


def _evaluate(a: argparse.Namespace) -> int:
    from fraudvae.detector import FraudVAE
    from fraudvae.io import iter_table
    from fraudvae.report import FIGURES, evaluate, summary, write_report

    fmt = _read_format(a)
    det = FraudVAE.load(a.model, device=a.device)
    ev = evaluate(det, iter_table(a.data, a.chunk_rows, fmt), a.label_column, source=str(a.data))
    path = write_report(ev, a.report)
    print(summary(ev))
    print(f"report written to {path}: metrics.json, {', '.join(FIGURES)}")
    return 0


def _sample(a: argparse.Namespace) -> int:
    from fraudvae.detector import FraudVAE
    from fraudvae.io import atomic_file

    det = FraudVAE.load(a.model, device=a.device)
    df = det.sample(a.n, seed=a.seed)
    out = Path(a.output).resolve()
    with atomic_file(out) as tmp:
        df.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)
    print(f"wrote {len(df):,} synthetic rows ({len(df.columns)} columns) drawn from model {det.version_} "
          f"with seed {a.seed} to {out}")
    return 0


def _sign(a: argparse.Namespace) -> int:
    from fraudvae.persist import sign_model

    version = sign_model(Path(a.model))
    print(f"signed model {version} in {a.model} (HMAC-SHA256 with the configured key)")
    return 0


def _example(a: argparse.Namespace) -> int:
    from fraudvae.example import example_transactions

    df = example_transactions(a.rows, a.fraud_rate, a.seed)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(f"wrote {len(df)} transactions ({int(df['is_fraud'].sum())} fraud, label column is_fraud) to {out}")
    return 0


def _fraction(text: str) -> float:
    v = float(text)
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return v


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return v


def _reading(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sep", help="CSV delimiter, such as ';' or '\\t' (default: detected among , ; tab |)")
    p.add_argument("--encoding", help="CSV text encoding, such as cp1252 for a Windows/Latin-1 export "
                                      "(default: UTF-8, with or without a byte-order mark)")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="fraudvae", description="Fraud and anomaly detection with a tabular VAE.",
                                formatter_class=fmt)
    p.add_argument("--version", action="version", version=f"fraudvae {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="train on the normal rows of a CSV/Parquet file and save a model directory",
                       formatter_class=fmt)
    f.add_argument("data", help="CSV or Parquet (.parquet, .pq) file of transactions")
    f.add_argument("--model", required=True, help="model directory to write")
    f.add_argument("--label-column", help="rows where it is 1/true/yes/fraud are kept out of training")
    f.add_argument("--no-label-check", action="store_true",
                   help="train even though a 0/1 column is named like a fraud label (is_fraud, Class, ...)")
    f.add_argument("--id-column", help="a row id: not modelled, echoed in score output")
    f.add_argument("--drop", action="append", default=[], metavar="COL", help="leave a column out (repeatable)")
    f.add_argument("--categorical", action="append", default=[], metavar="COL", help="treat a column as categorical")
    f.add_argument("--time-column", action="append", default=[], metavar="COL",
                   help="read a column as date-times (modelled as hour of day and day of week); such columns "
                        "are also recognised by their values (repeatable)")
    threshold = f.add_mutually_exclusive_group()
    threshold.add_argument("--target-fpr", type=_fraction, default=0.01,
                           help="false-positive rate on validation normals")
    threshold.add_argument("--alert-rate", type=_fraction,
                           help="alert budget: share of rows flagged, instead of --target-fpr")
    f.add_argument("--seed", type=int, default=0, help="random seed (same seed, same model)")
    f.add_argument("--epochs", type=_positive, help="maximum epochs (default: derived from the row count)")
    f.add_argument("--batch-size", type=_positive, help="rows per step (default: derived from the row count)")
    f.add_argument("--beta", type=float, default=1.0, help="KL weight")
    f.add_argument("--validation", choices=("tail", "interleaved", "random"),
                   help="which normal rows are held out for early stopping and the threshold: the last ones in "
                        "the file, rows spread evenly over it, or a random share (default: the library's, tail)")
    f.add_argument("--validation-fraction", type=float,
                   help="share of normal rows held out (default: the library's, 0.3)")
    f.add_argument("--point-mass-share", type=_fraction, metavar="SHARE",
                   help="model a numeric value held by at least this share of rows (say 0.25) as a point mass")
    f.add_argument("--device", default="auto", help="auto, cpu or cuda")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    _reading(f)
    f.set_defaults(run=_fit)

    s = sub.add_parser("score", help="score every row of a file with a saved model", formatter_class=fmt)
    s.add_argument("data", help="CSV or Parquet file with the model's columns")
    s.add_argument("--model", required=True, help="model directory written by fit")
    s.add_argument("--output", required=True,
                   help="CSV to write: score, flag, p_value, top_features (+ id); '-' for stdout")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument("--chunk-rows", type=_positive, default=50_000, help="rows read and scored at a time")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _reading(s)
    s.set_defaults(run=_score)

    v = sub.add_parser("evaluate", help="measure a saved model on a labelled file and write a report directory",
                       formatter_class=fmt)
    v.add_argument("data", help="CSV or Parquet file with the model's columns and a label column")
    v.add_argument("--model", required=True, help="model directory written by fit")
    v.add_argument("--label-column", required=True, help="1/true/yes/fraud marks a fraud row")
    v.add_argument("--report", required=True, help="directory to write: metrics.json and PNG figures")
    v.add_argument("--device", default="auto", help="auto, cpu or cuda")
    v.add_argument("--chunk-rows", type=_positive, default=50_000, help="rows read and scored at a time")
    _reading(v)
    v.set_defaults(run=_evaluate)

    m = sub.add_parser("sample", help="draw synthetic rows from a saved model (not a privacy guarantee)",
                       formatter_class=fmt)
    m.add_argument("--model", required=True, help="model directory written by fit")
    m.add_argument("-n", "--rows", dest="n", type=_positive, required=True, help="how many rows")
    m.add_argument("--output", required=True, help="CSV to write, the model's columns in original units")
    m.add_argument("--seed", type=int, default=0, help="random seed (same seed, same rows)")
    m.add_argument("--device", default="auto", help="auto, cpu or cuda")
    m.set_defaults(run=_sample)

    g = sub.add_parser("sign", help="sign a model directory with the key in $FRAUDVAE_MODEL_KEY (or the file "
                                    "$FRAUDVAE_MODEL_KEY_FILE): with a key set, only signed models load",
                       formatter_class=fmt)
    g.add_argument("--model", required=True, help="model directory written by fit")
    g.set_defaults(run=_sign)

    e = sub.add_parser("example-data", help="write seeded example card transactions with planted fraud",
                       formatter_class=fmt)
    e.add_argument("output", help="CSV file to write")
    e.add_argument("--rows", type=_positive, default=10_000, help="normal and fraud rows together")
    e.add_argument("--fraud-rate", type=float, default=0.02, help="share of fraud rows")
    e.add_argument("--seed", type=int, default=0, help="random seed")
    e.set_defaults(run=_example)

    # commands of other installed packages (the service registers `serve`): the library never
    # imports them by name
    for ep in entry_points(group="fraudvae.commands"):
        try:
            ep.load()(sub)
        except ImportError as exc:  # a plugin whose own dependencies are missing
            logging.getLogger(__name__).debug("command plugin %s unavailable: %s", ep.name, exc)
    return p


def _quiet_stdout() -> None:
    """The reader of stdout has gone (`fraudvae evaluate ... | head`): point stdout at /dev/null so
    the interpreter's final flush does not complain, as `cat` would simply stop."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="fraudvae: %(message)s")
    args = build_parser().parse_args(argv)
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None) and args.command != "serve":
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.run(args)
    except FraudVAEError as e:
        print(f"fraudvae: error: {e}", file=sys.stderr)
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
    except OSError as e:  # an output path that cannot be written, a full disk
        print(f"fraudvae: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
    except ValueError as e:  # bad option values from library functions
        print(f"fraudvae: error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("fraudvae: interrupted", file=sys.stderr)
        return 130
    return EXIT_BAD_INPUT
