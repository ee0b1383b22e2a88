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

from fraudvae import __version__, commands, commands_report
from fraudvae.errors import FraudVAEError

EXIT_BAD_INPUT = 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process the signal stopped


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM: remove the temporary files being written and stop at once. (Raising an exception
    instead would unwind through whatever runs at that instant, an import's callback included,
    where it can be swallowed.)"""
    from fraudvae.writing import remove_temporaries

    remove_temporaries()
    os.write(2, b"fraudvae: terminated (SIGTERM); nothing written\n")
    os._exit(EXIT_TERMINATED)


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


def _history(p: argparse.ArgumentParser) -> None:
    p.add_argument("--history", metavar="EARLIER", help="a model with entity columns: earlier transactions, after the "
                   "training file and before this one, replayed into the entities' history first (not scored)")
    p.add_argument("--labels", metavar="LABELS.csv", help="a model fit with --label-delay: confirmed labels from "
                   "elsewhere (chargebacks, reviews), columns transaction_id (or the id column), label and optionally "
                   "known_at; each counts in its transaction's entities' history from when it is known")


def _scoring(p: argparse.ArgumentParser) -> None:
    """What every command that scores a file in chunks takes: the device, the chunk size, how to read,
    earlier transactions for the entities' history."""
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--chunk-rows", type=_positive, default=50_000, help="rows read and scored at a time")
    _history(p)
    _reading(p)


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
                        "the file, rows spread evenly over it, or a random share (default: the library's, random)")
    f.add_argument("--validation-fraction", type=float,
                   help="share of normal rows held out (default: the library's, 0.3)")
    f.add_argument("--point-mass-share", type=_fraction, metavar="SHARE",
                   help="model a numeric value held by at least this share of rows (say 0.25) as a point mass")
    f.add_argument("--entity-column", action="append", default=[], metavar="COL",
                   help="a column naming an entity (card, customer, terminal; repeatable): each row gets features "
                        "from that entity's earlier transactions (counts over windows, amount against its usual, "
                        "novelty); the id itself is no input. Needs a time column")
    f.add_argument("--amount-column", metavar="COL", help="the amount compared with each entity's usual (default: "
                                                          "the column named like amount, amt, value, TX_AMOUNT)")
    f.add_argument("--windows", metavar="LIST", help="history windows, comma-separated (default 1h,1d,7d,30d)")
    f.add_argument("--usual-window", metavar="SPAN", help="the window each entity's usual amount is kept over "
                   "(default 90d, or the longest window if longer; at least 7d)")
    f.add_argument("--label-delay", metavar="SPAN",
                   help="with --label-column and --entity-column: confirmed frauds become each entity's history, a "
                        "label known this long after its transaction (7d, 48h); each row gets its entities' frauds "
                        "known before it. Scored files' label columns count the same way")
    f.add_argument("--label-time-column", metavar="COL",
                   help="instead of (or with) --label-delay: the time each row's label became known")
    f.add_argument("--risk-measures", metavar="LIST", default="share",
                   help="with --label-delay: what each entity's confirmed frauds give a row, comma-separated: share "
                        "(of its labels known that say fraud; the default), frauds (their number), or share,frauds")
    f.add_argument("--numeric", action="append", default=[], metavar="COL",
                   help="model an integer column named like an identifier as a number all the same")
    f.add_argument("--history", metavar="EARLIER", help="with --entity-column: transactions before the training "
                   "rows, replayed first so the first training days have their windows' history")
    f.add_argument("--feedback", metavar="REVIEWED.csv",
                   help="analysts' decisions, a file of id,decision rows (fraud or legit) joined on --id-column: "
                        "fraud rows are kept out of training, legit rows stay in whatever the label says")
    f.add_argument("--device", default="auto", help="auto, cpu or cuda")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    _reading(f)
    f.set_defaults(run=commands.fit)

    s = sub.add_parser("score", help="score every row of a file with a saved model", formatter_class=fmt)
    s.add_argument("data", help="CSV or Parquet file with the model's columns")
    s.add_argument("--model", required=True, help="model directory written by fit")
    s.add_argument("--output", required=True,
                   help="CSV to write: score, flag, p_value, top_features (+ id); '-' for stdout")
    s.add_argument("--explain", action="store_true",
                   help="add a 'reasons' column: for each flagged row, its most unusual columns with the value and "
                        "what the model expected, e.g. 'amount 4,800 (typical 20 to 90)'")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    _scoring(s)
    s.set_defaults(run=commands.score)

    v = sub.add_parser("evaluate", help="measure a saved model on a labelled file and write a report directory",
                       formatter_class=fmt)
    v.add_argument("data", help="CSV or Parquet file with the model's columns and a label column")
    v.add_argument("--model", required=True, help="model directory written by fit")
    v.add_argument("--label-column", required=True, help="1/true/yes/fraud marks a fraud row")
    v.add_argument("--report", required=True, help="directory to write: metrics.json and PNG figures")
    v.add_argument("--time-column", help="the column holding each row's time: adds per-day figures (precision "
                                         "at the daily alert budget, alerts raised against it)")
    v.add_argument("--alerts-per-day", type=_positive, metavar="K",
                   help="alerts the investigators can review a day (default with --time-column: 100)")
    v.add_argument("--natural-fraud-rate", type=_fraction, metavar="R",
                   help="the fraud rate of real traffic, when the file holds more frauds (enriched) or fewer: "
                        "precision and AP are also reported at R, the normal rows reweighted, beside the file's own")
    _scoring(v)
    v.set_defaults(run=commands_report.evaluate)

    c = sub.add_parser("compare", help="two saved models on the same labelled file, side by side: curves, metrics, "
                                       "the overlap of their alerts", formatter_class=fmt)
    c.add_argument("data", help="CSV or Parquet file with both models' columns and a label column")
    c.add_argument("--model", required=True, action="append", metavar="DIR",
                   help="model directory written by fit; give it twice: --model A --model B")
    c.add_argument("--label-column", required=True, help="1/true/yes/fraud marks a fraud row")
    c.add_argument("--report", required=True, help="directory to write: compare.json and PNG figures")
    c.add_argument("--alerts", type=_positive, metavar="K",
                   help="the alert budget over the whole file: precision of the K highest scores (default 100)")
    c.add_argument("--time-column", help="the column holding each row's time: the budget is per day")
    c.add_argument("--alerts-per-day", type=_positive, metavar="K",
                   help="alerts the investigators can review a day (with --time-column; default 100)")
    _scoring(c)
    c.set_defaults(run=commands_report.compare)

    w = sub.add_parser("monitor", help="measure drift window by window: alert rate against the target, p-values "
                                       "against uniform, the columns that moved; exit 3 on drift", formatter_class=fmt)
    w.add_argument("data", help="CSV or Parquet file with the model's columns (recent traffic)")
    w.add_argument("--model", required=True, help="model directory written by fit")
    w.add_argument("--report", required=True, help="directory to write: monitor.json and PNG figures")
    size = w.add_mutually_exclusive_group()
    size.add_argument("--window-rows", type=_positive, help="rows per window (default 10,000)")
    size.add_argument("--window", help="a time span per window (1d, 6h, 30min; needs --time-column)")
    w.add_argument("--time-column", help="the column holding each row's time (for --window)")
    w.add_argument("--device", default="auto", help="auto, cpu or cuda")
    _history(w)
    _reading(w)
    w.set_defaults(run=commands_report.monitor)

    r = sub.add_parser("recalibrate", help="a new model directory: the same weights, a threshold calibrated on "
                                           "recent normal rows, and its lineage", formatter_class=fmt)
    r.add_argument("--model", required=True, help="model directory written by fit")
    r.add_argument("--data", required=True, help="CSV or Parquet file of recent rows (normal, or labelled)")
    r.add_argument("--output", required=True, help="the new model directory")
    r.add_argument("--label-column", help="rows where it is 1/true/yes/fraud are left out")
    target = r.add_mutually_exclusive_group()
    target.add_argument("--target-fpr", type=_fraction, help="false-positive rate on the recent normals "
                                                             "(default: the model's own target)")
    target.add_argument("--alert-rate", type=_fraction, help="share of rows flagged, instead of --target-fpr")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda")
    _reading(r)
    r.set_defaults(run=commands_report.recalibrate)

    m = sub.add_parser("sample", help="draw synthetic rows from a saved model (not a privacy guarantee)",
                       formatter_class=fmt)
    m.add_argument("--model", required=True, help="model directory written by fit")
    m.add_argument("-n", "--rows", dest="n", type=_positive, required=True, help="how many rows")
    m.add_argument("--output", required=True, help="CSV to write, the model's columns in original units")
    m.add_argument("--seed", type=int, default=0, help="random seed (same seed, same rows)")
    m.add_argument("--device", default="auto", help="auto, cpu or cuda")
    m.set_defaults(run=commands.sample)

    g = sub.add_parser("sign", help="sign a model directory with the key in $FRAUDVAE_MODEL_KEY (or the file "
                                    "$FRAUDVAE_MODEL_KEY_FILE): with a key set, only signed models load",
                       formatter_class=fmt)
    g.add_argument("--model", required=True, help="model directory written by fit")
    g.set_defaults(run=commands.sign)

    e = sub.add_parser("example-data", help="write seeded example card transactions with planted fraud",
                       formatter_class=fmt)
    e.add_argument("output", help="CSV file to write")
    e.add_argument("--rows", type=_positive, default=10_000, help="normal and fraud rows together")
    e.add_argument("--fraud-rate", type=float, default=0.02, help="share of fraud rows")
    e.add_argument("--seed", type=int, default=0, help="random seed")
    e.set_defaults(run=commands.example)

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
