"""What each ``fraudvae`` command does, given its parsed arguments (`fraudvae.cli` parses them).
Each returns the exit code; library errors propagate to `fraudvae.cli.main`, which reports them.
Heavy modules (torch, pandas) are imported inside the commands, so ``--help`` answers at once."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

FLOAT_FORMAT = "%.10g"  # ten significant digits: scores exact to 1e-9 relative, no 17-digit noise


def read_format(a: argparse.Namespace):  # -> CsvFormat | None
    from fraudvae.io import csv_format, is_parquet

    return None if is_parquet(a.data) else csv_format(a.data, a.sep, a.encoding)


def history_models(a: argparse.Namespace, dets: list) -> bool:  # dets: list[FraudVAE]
    """With models that read entity columns: replay `--history` into each one's entities' state and
    say so (True). Such models score a file whole, in time order (its rows are read at once)."""
    from fraudvae.errors import ConfigError
    from fraudvae.io import is_parquet, read_table

    with_history = [d for d in dets if d.history_ is not None]
    if a.history and not with_history:
        raise ConfigError("--history replays earlier transactions into the entities' history: the model has no "
                          "entity columns (fit with --entity-column)")
    if getattr(a, "labels", None) and not with_history:
        raise ConfigError("--labels adds confirmed frauds to the entities' history: the model has no entity columns")
    if a.history:
        earlier = read_table(a.history, None if is_parquet(a.history) else format_of(a.history, a))
        for d in with_history:
            d.replay(earlier)
    return bool(with_history)


def labelled(a: argparse.Namespace, dets: list, df):  # (FraudVAE list, pd.DataFrame) -> pd.DataFrame
    """`df` with the confirmations of `--labels` (`fraudvae.history.risk.with_labels`), joined on the id
    column of the first model that keeps confirmed frauds as history; labels naming no row are counted
    on stderr (not dropped silently)."""
    if not getattr(a, "labels", None):
        return df
    from fraudvae.errors import ConfigError
    from fraudvae.history.risk import ID_NAMES, with_labels
    from fraudvae.io import is_parquet, read_table

    users = [d for d in dets if d.history_ is not None and d.history_.spec.label_column is not None]
    if not users:
        raise ConfigError("--labels adds confirmed frauds to the entities' history: the model was fit without "
                          "--label-delay or --label-time-column")
    det = users[0]
    ids = [c for c in (det.schema_.id_column, *ID_NAMES) if c]
    labels = read_table(a.labels, None if is_parquet(a.labels) else format_of(a.labels, a), text=ids)
    df, unmatched = with_labels(df, labels, det.history_.spec, det.schema_.id_column)
    if unmatched:
        print(f"--labels: {unmatched:,} label(s) name no transaction of {a.data} and were not used",
              file=sys.stderr)
    return df


def format_of(path: str, a: argparse.Namespace):  # -> CsvFormat
    from fraudvae.io import csv_format

    return csv_format(path, a.sep, a.encoding)


def fit(a: argparse.Namespace) -> int:
    from fraudvae.distributed import process_group

    # under torchrun: every process reads the file and fits the same preprocessing, trains on its
    # share of the rows (DDP), and rank 0 alone writes the model and reports
    with process_group(a.device) as rank:
        return _fit_in_process(a, rank)


def _fit_in_process(a: argparse.Namespace, rank: int) -> int:
    from tqdm import tqdm

    from fraudvae.detector import FraudVAE
    from fraudvae.io import read_table
    from fraudvae.persist import MODEL
    from fraudvae.writing import check_output_directory

    # refused before any work: a file, the data's folder, a folder of other things (replaced whole)
    check_output_directory(a.model, MODEL, "--model", reading=[a.data, *([a.feedback] if a.feedback else [])])
    fmt = read_format(a)
    df = read_table(a.data, fmt, skip=a.drop, text=[a.id_column] if a.id_column else [])
    earlier = None
    if a.history:
        from fraudvae.io import is_parquet

        earlier = read_table(a.history, None if is_parquet(a.history) else format_of(a.history, a), skip=a.drop,
                             text=[a.id_column] if a.id_column else [])
    skipped = df.attrs.get("skipped", [])  # nested Parquet columns named in --drop: never read
    label_column, feedback = a.label_column, None
    if a.feedback:
        from fraudvae.feedback import apply_feedback

        df, label_column, feedback = apply_feedback(df, a.feedback, a.id_column, a.label_column)
    det = FraudVAE(label_column=label_column, id_column=a.id_column,
                   drop=tuple(d for d in a.drop if d not in skipped), categorical=tuple(a.categorical),
                   time_columns=tuple(a.time_column), label_check=not a.no_label_check,
                   target_fpr=None if a.alert_rate else a.target_fpr,
                   alert_rate=a.alert_rate, seed=a.seed, epochs=a.epochs, batch_size=a.batch_size,
                   beta=a.beta, point_mass_share=a.point_mass_share, device=a.device,
                   entity_columns=tuple(a.entity_column), amount_column=a.amount_column,
                   windows=tuple(w.strip() for w in a.windows.split(",") if w.strip()) if a.windows else None,
                   usual_window=a.usual_window,
                   numeric=tuple(a.numeric),
                   label_delay=a.label_delay, label_time_column=a.label_time_column,
                   risk_measures=tuple(m.strip() for m in a.risk_measures.split(",") if m.strip()),
                   **({} if a.validation_fraction is None else {"validation_fraction": a.validation_fraction}),
                   **({} if a.validation is None else {"validation": a.validation}))
    bar = tqdm(desc="training", unit="epoch", disable=a.quiet or rank > 0 or None, leave=False)

    def progress(epoch: int, total: int, losses: dict) -> None:
        bar.total = total
        bar.set_postfix(train=f"{losses['train']:.3f}", val=f"{losses['val']:.3f}", refresh=False)
        bar.update(1)

    try:
        det.fit(df, progress=progress, history=earlier)
    finally:
        bar.close()
    if rank > 0:
        return 0
    if feedback is not None:  # recorded with the model (the version follows the content)
        det.metrics_["feedback"] = feedback
        unknown = feedback["unknown_ids"]
        print(f"feedback {feedback['file']} (sha256 {feedback['sha256'][:12]}): {feedback['decisions']} decisions "
              f"({feedback['fraud']} fraud, {feedback['legit']} legit) on {feedback['rows_reviewed']} rows; "
              f"{feedback['moved_to_fraud']} rows moved to fraud (kept out of training), "
              f"{feedback['moved_to_normal']} moved to normal" + (f"; {unknown} reviewed ids not in the data "
                                                                  f"(--id-column {a.id_column})" if unknown else ""))
        if feedback["decisions"] == 0:
            print(f"fraudvae: warning: the feedback file {feedback['file']} holds no decisions (a header only?): "
                  "nothing was changed by it", file=sys.stderr)
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
    if det.history_ is not None:
        h = det.history_
        spec = h.spec
        print(f"history: {', '.join(f'{e} ({n:,} entities)' for e, n in h.entities().items())} by {spec.time_column}"
              + (f", amount {spec.amount_column}" if spec.amount_column else ", no amount column")
              + f"; {len(h.to_json()) / 1e6:.1f} MB saved with the model (state at the end of the training file)")
        if spec.label_column is not None:
            from fraudvae.history import window_label

            when = f"{window_label(spec.label_delay)} after each transaction" if spec.label_delay is not None else ""
            when = " or ".join(x for x in (when, f"at {spec.label_time_column}" if spec.label_time_column else "") if x)
            pending = sum(len(t.pending) for t in h.tables.values())
            print(f"confirmed frauds: {spec.label_column} known {when}; {pending:,} entity labels not known yet "
                  f"by the end of the file wait in the saved state")
        warm = m["history"]["warmup_rows"]
        if warm:
            print(f"history warm-up: the first {warm:,} rows build the history but are not trained on (their windows "
                  f"were not yet full; --history EARLIER gives them their past)")
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


def score(a: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    from fraudvae.detector import FraudVAE
    from fraudvae.errors import DataError
    from fraudvae.io import iter_table
    from fraudvae.writing import atomic_file, check_writable, refuse_inside

    to_stdout = a.output == "-"
    out_path = None
    if not to_stdout:  # refused before any work: the input, the model, a directory, a place that cannot be written
        out_path = check_writable(a.output)
        data = Path(a.data)
        if out_path == data.resolve() or (out_path.exists() and data.exists() and os.path.samefile(out_path, data)):
            raise DataError(f"--output {a.output!r} is the input file: choose another name (the scores never "
                            "overwrite the data)")
        refuse_inside(a.output, a.model, "--output", "the model directory")
    fmt = read_format(a)
    det = FraudVAE.load(a.model, device=a.device)
    wanted = {*det.schema_.names(), det.schema_.id_column} - {None}
    ids = [det.schema_.id_column] if det.schema_.id_column else []  # text as written: "000123" stays so
    chunks: Iterable[pd.DataFrame] = iter_table(a.data, a.chunk_rows, fmt, columns=wanted, text=ids)
    if history_models(a, [det]):  # the whole file in time order, then scored (and explained) in chunks
        from fraudvae.io import read_table

        whole = det.with_history(labelled(a, [det], read_table(a.data, fmt, text=ids)))
        chunks = (whole.iloc[i: i + a.chunk_rows] for i in range(0, len(whole), a.chunk_rows))
    n = flagged = 0
    top: list[pd.DataFrame] = []

    def write(res: pd.DataFrame, target) -> None:
        res.to_csv(target, mode="a", header=n == 0, index=False, float_format=FLOAT_FORMAT)

    with tqdm(desc="scoring", unit="row", disable=a.quiet or None, leave=False) as bar:
        sink = _stdout_sink() if out_path is None else atomic_file(a.output)
        with sink as target:
            for chunk in chunks:  # memory stays bounded (but for a model with entity columns)
                res = det.score(chunk)
                if a.explain:  # reasons for the flagged rows only: what a reviewer opens
                    flagged_rows = chunk[res["flag"].to_numpy()]
                    res["reasons"] = det.explain(flagged_rows, reasons=True)["reasons"].reindex(res.index)
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
    """`--output -`: the scores go to a temporary file first (on disk: memory does not grow with the
    input) and are copied to stdout only once every row has scored, so a run that fails on a bad value
    further down writes nothing to stdout, as a failed run to a file leaves no file. Flushed on the
    way out, inside `main`, so a reader that has gone is met there (quietly), not at exit."""

    def __enter__(self):
        import tempfile

        self.spool = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")
        return self.spool

    def __exit__(self, kind: type | None, *exc: object) -> None:
        import shutil

        try:
            if kind is None:
                self.spool.seek(0)
                shutil.copyfileobj(self.spool, sys.stdout, 1 << 20)
                sys.stdout.flush()
        finally:
            self.spool.close()


def sample(a: argparse.Namespace) -> int:
    from fraudvae.detector import FraudVAE
    from fraudvae.writing import atomic_file, check_writable, refuse_inside

    if a.output != "-":  # '-' is standard output, as for score
        check_writable(a.output)
        refuse_inside(a.output, a.model, "--output", "the model directory")
    det = FraudVAE.load(a.model, device=a.device)
    df = det.sample(a.n, seed=a.seed)
    if a.output == "-":
        df.to_csv(sys.stdout, index=False, float_format=FLOAT_FORMAT)
        sys.stdout.flush()
        where = "stdout"
    else:
        with atomic_file(a.output) as tmp:
            df.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)
        where = str(Path(a.output).resolve())
    # with '-' the report goes to stderr: the rows are the output
    print(f"wrote {len(df):,} synthetic rows ({len(df.columns)} columns) drawn from model {det.version_} "
          f"with seed {a.seed} to {where}", file=sys.stderr if a.output == "-" else sys.stdout)
    return 0


def sign(a: argparse.Namespace) -> int:
    from fraudvae.persist import sign_model

    version = sign_model(Path(a.model))
    print(f"signed model {version} in {a.model} (HMAC-SHA256 with the configured key)")
    return 0


def example(a: argparse.Namespace) -> int:
    from fraudvae.example import example_transactions

    df = example_transactions(a.rows, a.fraud_rate, a.seed)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(f"wrote {len(df)} transactions ({int(df['is_fraud'].sum())} fraud, label column is_fraud) to {out}")
    return 0
