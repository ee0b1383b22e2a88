"""`fraudvae fit | score | evaluate | sample | example-data`: the command line. Errors: one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from fraudvae.errors import FraudVAEError

EXIT_BAD_INPUT = 2


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

    df = read_table(a.data)
    det = FraudVAE(label_column=a.label_column, id_column=a.id_column, drop=tuple(a.drop),
                   categorical=tuple(a.categorical), target_fpr=None if a.alert_rate else a.target_fpr,
                   alert_rate=a.alert_rate, seed=a.seed, epochs=a.epochs, batch_size=a.batch_size,
                   beta=a.beta, point_mass_share=a.point_mass_share, device=a.device,
                   **({} if a.validation_fraction is None else {"validation_fraction": a.validation_fraction}))
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
    print(f"model {det.version_} saved to {path}")
    print(f"rows: {m['rows']} ({m['normal_rows']} normal, {m['fraud_rows']} labelled fraud kept out of training); "
          f"trained on {m['train_rows']}, validated on {m['validation_rows']}")
    for role, names in roles.items():
        print(f"  {role:<12} {', '.join(names)}")
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
    from fraudvae.io import atomic_file, iter_table

    det = FraudVAE.load(a.model, device=a.device)
    out_path = Path(a.output).resolve()
    n = flagged = 0
    top: list[pd.DataFrame] = []
    with atomic_file(out_path) as tmp, tqdm(desc="scoring", unit="row", disable=a.quiet or None,
                                            leave=False) as bar:
        for chunk in iter_table(a.data, a.chunk_rows):  # written as it goes: memory does not grow with the file
            res = det.score(chunk)
            res["flag"] = res["flag"].astype(int)
            res.to_csv(tmp, mode="a", header=n == 0, index=False)
            n += len(res)
            flagged += int(res["flag"].sum())
            top.append(res.nlargest(5, "score"))
            bar.update(len(res))
    # the report goes to stderr: the scores are the output (stdout stays clean for pipelines)
    report = [f"scored {n} rows with model {det.version_}: {flagged} flagged ({flagged / max(n, 1):.2%}) "
              f"at threshold {det.threshold_.value:.4f}; written to {out_path}"]
    if flagged:
        report += ["most suspicious rows:", pd.concat(top).nlargest(5, "score").to_string(index=False)]
    print("\n".join(report), file=sys.stderr)
    return 0


def _evaluate(a: argparse.Namespace) -> int:
    from fraudvae.detector import FraudVAE
    from fraudvae.io import iter_table
    from fraudvae.report import FIGURES, evaluate, summary, write_report

    det = FraudVAE.load(a.model, device=a.device)
    ev = evaluate(det, iter_table(a.data, a.chunk_rows), a.label_column, source=str(a.data))
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
        df.to_csv(tmp, index=False)
    print(f"wrote {len(df):,} synthetic rows ({len(df.columns)} columns) drawn from model {det.version_} "
          f"with seed {a.seed} to {out}")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fraudvae", description="Fraud and anomaly detection with a tabular VAE.")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("fit", help="train on the normal rows of a CSV/Parquet file and save a model directory")
    f.add_argument("data")
    f.add_argument("--model", required=True, help="model directory to write")
    f.add_argument("--label-column", help="rows where it is 1/true/yes/fraud are kept out of training")
    f.add_argument("--id-column", help="a row id: not modelled, echoed in score output")
    f.add_argument("--drop", action="append", default=[], metavar="COL", help="leave a column out (repeatable)")
    f.add_argument("--categorical", action="append", default=[], metavar="COL", help="treat a column as categorical")
    f.add_argument("--target-fpr", type=_fraction, default=0.01, help="false-positive rate on validation normals")
    f.add_argument("--alert-rate", type=_fraction, help="alert budget: share of rows flagged, instead of --target-fpr")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--epochs", type=_positive, help="maximum epochs (default: derived from the row count)")
    f.add_argument("--batch-size", type=_positive)
    f.add_argument("--beta", type=float, default=1.0, help="KL weight (default 1)")
    f.add_argument("--validation-fraction", type=float,
                   help="share of normal rows held out, the last ones in the file (default: the library's, 0.3)")
    f.add_argument("--point-mass-share", type=_fraction, metavar="SHARE",
                   help="model a numeric value held by at least this share of rows (say 0.25) as a point mass")
    f.add_argument("--device", default="auto", help="auto, cpu or cuda")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(run=_fit)

    s = sub.add_parser("score", help="score every row of a file with a saved model")
    s.add_argument("data")
    s.add_argument("--model", required=True)
    s.add_argument("--output", required=True, help="CSV to write: score, flag, p_value, top_features (+ id)")
    s.add_argument("--device", default="auto")
    s.add_argument("--chunk-rows", type=_positive, default=50_000)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(run=_score)

    v = sub.add_parser("evaluate", help="measure a saved model on a labelled file and write a report directory")
    v.add_argument("data")
    v.add_argument("--model", required=True)
    v.add_argument("--label-column", required=True, help="1/true/yes/fraud marks a fraud row")
    v.add_argument("--report", required=True, help="directory to write: metrics.json and PNG figures")
    v.add_argument("--device", default="auto")
    v.add_argument("--chunk-rows", type=_positive, default=50_000)
    v.set_defaults(run=_evaluate)

    m = sub.add_parser("sample", help="draw synthetic rows from a saved model (not a privacy guarantee)")
    m.add_argument("--model", required=True)
    m.add_argument("-n", "--rows", dest="n", type=_positive, required=True, help="how many rows")
    m.add_argument("--output", required=True, help="CSV to write, the model's columns in original units")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--device", default="auto")
    m.set_defaults(run=_sample)

    e = sub.add_parser("example-data", help="write seeded example card transactions with planted fraud")
    e.add_argument("output")
    e.add_argument("--rows", type=_positive, default=10_000)
    e.add_argument("--fraud-rate", type=float, default=0.02)
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(run=_example)

    # commands of other installed packages (the service registers `serve`): the library never
    # imports them by name
    for ep in entry_points(group="fraudvae.commands"):
        try:
            ep.load()(sub)
        except ImportError as exc:  # a plugin whose own dependencies are missing
            logging.getLogger(__name__).debug("command plugin %s unavailable: %s", ep.name, exc)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="fraudvae: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except FraudVAEError as e:
        print(f"fraudvae: error: {e}", file=sys.stderr)
    except OSError as e:  # e.g. an output path that cannot be written
        print(f"fraudvae: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
    except ValueError as e:  # bad option values from library functions
        print(f"fraudvae: error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("fraudvae: interrupted", file=sys.stderr)
        return 130
    return EXIT_BAD_INPUT
