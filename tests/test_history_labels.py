"""Confirmed frauds as history (`fraudvae.history.risk`): an entity's frauds known before a row, from
labels known a delay after their transactions."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudvae import ConfigError, FraudVAE, SchemaError
from fraudvae.cli import main
from fraudvae.history import HistorySpec, HistoryState, derive
from fraudvae.history.risk import with_labels
from fraudvae.history.spec import risk_window

START = pd.Timestamp("2024-03-01")
DAY = 86400.0


def terminals(n: int = 12, days: int = 30, seed: int = 0) -> pd.DataFrame:
    """Transactions at `n` terminals, about 8 a day each; terminal 3 is compromised from day 12 to day
    20 (every transaction there a fraud)."""
    rng = np.random.default_rng(seed)
    rows = []
    for term in range(n):
        for s in np.sort(rng.uniform(0, days * DAY, rng.poisson(8 * days))):
            fraud = int(term == 3 and 12 * DAY <= s < 20 * DAY)
            rows.append((term, int(rng.integers(0, 60)), START + pd.Timedelta(seconds=float(s)),
                         float(rng.lognormal(3, 0.5)), fraud))
    df = pd.DataFrame(rows, columns=["terminal_id", "card_id", "when", "amount", "is_fraud"])
    df = df.sort_values("when", kind="stable").reset_index(drop=True)
    df.insert(0, "tx", [f"t{i:05d}" for i in range(len(df))])
    return df


def spec(delay: float = 7 * DAY) -> HistorySpec:
    return HistorySpec(("terminal_id",), "when", "amount", label_column="is_fraud", label_delay=delay,
                       label_windows=(7 * DAY,), risk_measures=("frauds", "share"))


FRAUDS_7D = "terminal_id: frauds known in 7d"
SHARE_7D = "terminal_id: fraud share known in 7d"


def test_a_label_counts_only_after_its_delay() -> None:
    df = terminals()
    f = derive(spec(), df, HistoryState.empty(spec()))[FRAUDS_7D]
    t = (df["when"] - START).dt.total_seconds().to_numpy()
    at3 = df["terminal_id"].to_numpy() == 3
    first_fraud = t[at3 & (df["is_fraud"].to_numpy() == 1)].min()
    assert np.all(f[at3 & (t <= first_fraud + 7 * DAY)] == 0)  # not before the first label is known
    assert np.all(f[at3 & (t > first_fraud + 7 * DAY + 3600) & (t < 27 * DAY)] > 0.5)
    assert np.all(f[~at3] == 0)  # other terminals had no fraud
    # a label known at once still never counts for its own row (known at its time, not before it)
    g = derive(spec(0.0), df, HistoryState.empty(spec(0.0)))[FRAUDS_7D]
    frauds = np.flatnonzero(at3 & (df["is_fraud"].to_numpy() == 1))
    assert g[frauds[0]] == 0 and g[frauds[1]] > 0


def test_labels_not_known_yet_change_nothing() -> None:
    df = terminals()
    s = spec()
    base = derive(s, df, HistoryState.empty(s))
    t = (df["when"] - START).dt.total_seconds().to_numpy()
    late = t > t.max() - 7 * DAY
    flipped = df.assign(is_fraud=np.where(late, 1 - df["is_fraud"], df["is_fraud"]))
    again = derive(s, flipped, HistoryState.empty(s))
    for name in s.names():
        np.testing.assert_array_equal(base[name], again[name])
    # and a file without its label column has no confirmations, but still its other features
    bare = derive(s, df.drop(columns="is_fraud"), HistoryState.empty(s))
    assert np.all(bare[FRAUDS_7D][np.isfinite(bare[FRAUDS_7D])] == 0)
    np.testing.assert_array_equal(bare["terminal_id: tx in 1d above pace"], base["terminal_id: tx in 1d above pace"])


@pytest.mark.parametrize("cut_day", [13.5, 16.0, 22.0])
def test_pending_labels_carry_across_files(cut_day: float) -> None:
    df = terminals()
    s = spec()
    whole = derive(s, df, HistoryState.empty(s))
    cut = df["when"] < START + pd.Timedelta(days=cut_day)
    state = HistoryState.empty(s)
    derive(s, df[cut], state)
    assert len(state.tables["terminal_id"].pending) > 0
    state = HistoryState.from_json(state.to_json(), s)  # saved with the model in between
    later = derive(s, df[~cut], state)
    for name in s.names():
        np.testing.assert_allclose(later[name], whole[name][~cut.to_numpy()], rtol=1e-12, equal_nan=True)
    # pending labels are bounded by the delay: all come due within it
    at = state.tables["terminal_id"].pending.at
    assert np.all(at >= state.end) and np.all(at <= state.end + 7 * DAY)


def test_a_spec_without_labels_keeps_its_key_and_saved_form() -> None:
    plain = HistorySpec(("terminal_id",), "when", "amount")
    assert "label_column" not in plain.to_dict()
    assert HistorySpec.from_dict(plain.to_dict()) == plain
    assert HistorySpec.from_dict(spec().to_dict()) == spec() and spec().key() != plain.key()
    saved_before_the_share = spec().to_dict()
    del saved_before_the_share["risk_measures"]
    assert HistorySpec.from_dict(saved_before_the_share).risk_measures == ("frauds",)
    assert replace(spec(), risk_measures=("frauds",)).to_dict() == saved_before_the_share  # its key unchanged
    with pytest.raises(ValueError, match="risk_measures"):
        HistorySpec.from_dict(spec().to_dict() | {"risk_measures": ["odds"]})
    state = HistoryState.empty(plain)
    derive(plain, terminals(), state)
    assert b'"pending"' not in state.to_json() and b'"risk"' not in state.to_json()


def test_a_bad_label_is_named() -> None:
    df = terminals().astype({"is_fraud": object})
    df.loc[5, "is_fraud"] = "maybe"
    with pytest.raises(SchemaError, match=r"label column 'is_fraud' is not binary: value 'maybe'"):
        derive(spec(), df, HistoryState.empty(spec()))
    df.loc[5, "is_fraud"] = None  # a gap is a transaction nobody labelled
    derive(spec(), df, HistoryState.empty(spec()))


def test_labels_file_equals_the_label_column() -> None:
    df = terminals()
    s = spec()
    want = derive(s, df, HistoryState.empty(s))
    labels = pd.DataFrame({"transaction_id": df["tx"], "label": df["is_fraud"]})
    joined, unmatched = with_labels(df.drop(columns="is_fraud"), pd.concat([labels, pd.DataFrame(
        {"transaction_id": ["nope"], "label": [1]})]), s, "tx")
    assert unmatched == 1
    got = derive(s, joined, HistoryState.empty(s))
    for name in s.names():
        np.testing.assert_array_equal(got[name], want[name])
    # a label known later than the delay counts from then
    first = int(np.flatnonzero(df["is_fraud"].to_numpy())[0])
    slow = labels.assign(known_at=np.where(labels.index == first, str(START + pd.Timedelta(days=29)), None))
    joined, _ = with_labels(df.drop(columns="is_fraud"), slow, s, "tx")
    late = derive(s, joined, HistoryState.empty(s))
    assert late[FRAUDS_7D].sum() < want[FRAUDS_7D].sum()


def test_fit_and_score_use_confirmed_frauds(tmp_path: Path) -> None:
    df = terminals(days=40)
    df["when"] = df["when"].dt.strftime("%Y-%m-%d %H:%M:%S")
    train, test = df.iloc[: len(df) * 3 // 4], df.iloc[len(df) * 3 // 4:]
    det = FraudVAE(label_column="is_fraud", id_column="tx", entity_columns=("terminal_id", "card_id"),
                   label_delay="2d", epochs=5, seed=0).fit(train)
    names = det.schema_.names()
    share = "terminal_id: fraud share known in 1d"
    assert share in names and "is_fraud" not in names  # new models read the share, over a day
    assert not any("frauds known" in name for name in names)
    det.save(tmp_path / "m")
    again = FraudVAE.load(tmp_path / "m")
    whole = derive(det.history_.spec, df, HistoryState.empty(det.history_.spec))
    with_f = again.with_history(test)
    np.testing.assert_allclose(with_f[share].to_numpy(), whole[share][len(train):], rtol=1e-12)
    # the command line: --labels gives the scores the label column gives
    test.to_csv(tmp_path / "test.csv", index=False)
    test.drop(columns="is_fraud").to_csv(tmp_path / "bare.csv", index=False)
    test[["tx", "is_fraud"]].rename(columns={"is_fraud": "label"}).to_csv(tmp_path / "labels.csv", index=False)
    assert main(["score", str(tmp_path / "test.csv"), "--model", str(tmp_path / "m"), "--output",
                 str(tmp_path / "a.csv"), "--quiet"]) == 0
    assert main(["score", str(tmp_path / "bare.csv"), "--model", str(tmp_path / "m"), "--labels",
                 str(tmp_path / "labels.csv"), "--output", str(tmp_path / "b.csv"), "--quiet"]) == 0
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_array_equal(a["score"], b["score"])


def test_label_delay_needs_labels_and_entities() -> None:
    df = terminals()
    with pytest.raises(ConfigError, match="--label-delay"):
        FraudVAE(entity_columns=("terminal_id",), label_delay="7d", label_check=False).fit(df)
    with pytest.raises(ConfigError, match="--label-delay"):
        FraudVAE(label_column="is_fraud", label_delay="7d").fit(df)
    with pytest.raises(ConfigError, match="window"):
        FraudVAE(label_column="is_fraud", entity_columns=("terminal_id",), label_delay="soon").fit(df)


def test_a_label_time_column_says_when_each_label_became_known() -> None:
    df = terminals(days=40)
    first = int(np.flatnonzero(df["is_fraud"].to_numpy())[0])
    known = df["when"] + pd.Timedelta(days=30)  # every label a month late...
    known.iloc[first] = df["when"].iloc[first] + pd.Timedelta(hours=1)  # ...but the first one
    df = df.assign(when=df["when"].dt.strftime("%Y-%m-%d %H:%M:%S"), known=known.dt.strftime("%Y-%m-%d %H:%M:%S"))
    det = FraudVAE(label_column="is_fraud", entity_columns=("terminal_id",), label_time_column="known", epochs=2,
                   seed=0).fit(df)
    spec = det.history_.spec
    assert spec.label_time_column == "known" and spec.label_delay is None and "known" not in det.schema_.names()
    assert spec.risk_windows == (DAY,)  # the share's window: a day, whatever the delay
    spec = replace(spec, risk_measures=("frauds",), label_windows=(risk_window(spec.windows, 30 * DAY, ("frauds",)),))
    assert spec.risk_windows == (30 * DAY,)  # the number's: the labels' typical delay, a month, needs the longest
    f = derive(spec, df, HistoryState.empty(spec))["terminal_id: frauds known in 30d"]
    t = pd.to_datetime(df["when"])
    at3 = (df["terminal_id"] == 3).to_numpy()
    at = t.iloc[first]
    soon = ((t > at + pd.Timedelta(hours=1)) & (t < at + pd.Timedelta(days=2))).to_numpy()
    assert np.all(f[at3 & soon] > 0.5) and np.all(f[at3 & soon] < 1.5)  # the first label alone, in time


def test_the_fraud_share_means_the_same_at_a_busy_and_a_quiet_terminal() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for term, per_day in ((0, 16.0), (1, 2.0), (2, 8.0)):  # 0 and 1 compromised on days 10 to 18
        for s in np.sort(rng.uniform(0, 30 * DAY, rng.poisson(per_day * 30))):
            fraud = int(term < 2 and 10 * DAY <= s < 18 * DAY)
            rows.append((term, START + pd.Timedelta(seconds=float(s)), 20.0, fraud))
    df = pd.DataFrame(rows, columns=["terminal_id", "when", "amount", "is_fraud"]).sort_values("when", kind="stable")
    f = derive(spec(), df, HistoryState.empty(spec()))
    day = ((df["when"] - START).dt.total_seconds() // DAY).to_numpy()
    term = df["terminal_id"].to_numpy()
    share, frauds = f[SHARE_7D], f[FRAUDS_7D]
    assert np.all((share >= 0) & (share <= 1)) and np.all(share[term == 2] == 0) and np.all(share[frauds == 0] == 0)
    late = (day >= 20) & (day < 25)  # the compromise's labels known
    busy, quiet = late & (term == 0), late & (term == 1)
    assert frauds[busy].mean() > 4 * frauds[quiet].mean()  # the number says how busy the terminal is...
    assert abs(share[busy].mean() - share[quiet].mean()) < 0.15 and share[busy].mean() > 0.4  # ...the share not


def test_a_late_correction_keeps_the_share_a_share() -> None:
    from fraudvae.history.state import Pending

    df = terminals(days=60)
    df["is_fraud"] = 0
    early, late = df[df["when"] < START + pd.Timedelta(days=10)], df[df["when"] >= START + pd.Timedelta(days=55)]
    for change in (1.0, -1.0):  # a label long known corrected now, to fraud and back from it
        s, state = spec(), HistoryState.empty(spec())
        derive(s, early, state)
        table = state.tables["terminal_id"]
        when = (late["when"].iloc[0] - pd.Timestamp(0)).total_seconds() - 1.0  # epoch seconds, as the state keeps
        p = table.pending
        table.pending = Pending(np.r_[p.at, when], p.keys + ["3"], np.r_[p.labels, change], np.r_[p.counts, 0.0])
        share = derive(s, late, state)[SHARE_7D]
        assert np.all((share >= 0) & (share <= 1))
        at3 = late["terminal_id"].to_numpy() == 3
        assert (share[at3][0] == 1.0) if change > 0 else np.all(share[at3] == 0)


def test_reasons_say_confirmed_frauds_in_words() -> None:
    from fraudvae.reasons import Reason, _in_words

    r = _in_words(Reason("TERMINAL_ID: frauds known in 7d", "4.2", "", 12.0, 0.0, 0.4, ()), 4.2)
    assert r.column == "TERMINAL_ID" and "4.2 of its transactions confirmed as fraud" in r.value
    assert "typical 0.0 to 0.4" in r.expected
    r = _in_words(Reason("TERMINAL_ID: fraud share known in 7d", "0.8", "", 12.0, 0.0, 0.05, ()), 0.8)
    assert r.column == "TERMINAL_ID" and "80% of its labelled transactions confirmed as fraud" in r.value
    assert "typical 0% to 5%" in r.expected


def test_the_risk_window_is_a_day_for_the_share_and_spans_the_delay_for_the_number() -> None:
    from fraudvae.history.spec import DEFAULT_WINDOWS

    for delay in (0.0, 2 * DAY, 7 * DAY, 60 * DAY):
        assert risk_window(DEFAULT_WINDOWS, delay) == DAY  # the share: a day, whatever the delay
    assert risk_window((3600.0, 7 * DAY), 0.0) == 7 * DAY  # none of a day: the shortest longer one
    frauds = ("frauds",)
    assert risk_window(DEFAULT_WINDOWS, 7 * DAY, frauds) == 7 * DAY
    assert risk_window(DEFAULT_WINDOWS, 2 * DAY, frauds) == 7 * DAY
    assert risk_window(DEFAULT_WINDOWS, 0.0, frauds) == DAY  # a day at least
    assert risk_window(DEFAULT_WINDOWS, 60 * DAY, frauds) == 30 * DAY  # none spans it: the longest

def test_evaluate_counts_the_labels_file(tmp_path: Path, capsys) -> None:
    df = terminals(days=40)
    df["when"] = df["when"].dt.strftime("%Y-%m-%d %H:%M:%S")
    early = pd.to_datetime(df["when"]) < START + pd.Timedelta(days=16)
    train, test = df[early], df[~early]
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"transaction_id": ["nope", "nada"], "label": [1, 0]}).to_csv(tmp_path / "labels.csv", index=False)
    assert main(["fit", str(tmp_path / "train.csv"), "--model", str(tmp_path / "m"), "--label-column", "is_fraud",
                 "--id-column", "tx", "--entity-column", "terminal_id", "--label-delay", "1d", "--epochs", "3",
                 "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "test.csv"), "--model", str(tmp_path / "m"), "--label-column", "is_fraud",
                 "--labels", str(tmp_path / "labels.csv"), "--report", str(tmp_path / "r")]) == 0
    assert "2 label(s) name no transaction" in capsys.readouterr().err


@pytest.mark.parametrize("labels", [True, False])
def test_stored_states_in_bulk_are_each_entitys_json(labels: bool) -> None:
    """The stores read and write states in bulk (`stored.load`, `stored.dump`): the same JSON as
    `entity_json` of each entity, pending labels included, and read back to the same states."""
    from fraudvae.history import stored

    s = HistorySpec(("terminal_id", "card_id"), "when", "amount", novelty=("card_id", "terminal_id"),
                    **({"label_column": "is_fraud", "label_delay": 7 * DAY, "label_windows": (7 * DAY,)}
                       if labels else {}))
    df = terminals(days=16)  # cut while terminal 3's labels are pending
    state = HistoryState.empty(s)
    derive(s, df, state)
    keys = {e: list(t.keys) for e, t in state.tables.items()}
    dumped = list(stored.dump(state, keys))
    assert [(e, k, last) for e, k, last, _ in dumped] == [(e, k, state.tables[e].get(k).last)
                                                          for e, ks in keys.items() for k in ks]
    assert [text for *_, text in dumped] == [stored.entity_json(state.tables[e].get(k))
                                             for e, ks in keys.items() for k in ks]
    if labels:
        assert len(state.tables["terminal_id"].pending) > 0
    again = HistoryState.empty(s)
    for e in keys:
        stored.load(again.tables[e], {k: text for col, k, _, text in dumped if col == e})
    for e, ks in keys.items():
        for k in ks:
            assert stored.entity_json(again.tables[e].get(k)) == stored.entity_json(state.tables[e].get(k))


def test_the_share_outlives_its_decayed_counts() -> None:
    """Frauds and labels known decay alike over the window, so the share is their ratio however long
    ago they became known: still so after a day's window has decayed them below what a double holds
    (about two years), where the decayed ratio read 0 / 0."""
    s = HistorySpec(("terminal_id",), "when", "amount", label_column="is_fraud", label_delay=3600.0,
                    label_windows=(DAY,))
    days = [0, 1, 2, 800, 801]
    df = pd.DataFrame({"terminal_id": 7, "when": [START + pd.Timedelta(days=d) for d in days],
                       "amount": 20.0, "is_fraud": [1, 0, 0, 0, 0]})
    share = derive(s, df, HistoryState.empty(s))["terminal_id: fraud share known in 1d"]
    # the fraud known at hour 1 of day 0, the normal one at hour 1 of day 1: weights e^-1 and 1 at day 2
    expected = np.exp(-1.0) / (np.exp(-1.0) + 1.0)
    np.testing.assert_allclose(share[:3], [0.0, 1.0, expected], rtol=1e-12)
    # day 800: the labels of days 0 and 1 weigh e^-799 and e^-798 (beyond a double); day 2's is known too
    at_800 = np.exp(-2.0) / (np.exp(-2.0) + np.exp(-1.0) + 1.0)
    np.testing.assert_allclose(share[3], at_800, rtol=1e-12)
    assert share[4] == 0.0  # the fraud weighs e^-800 against day 800's normal label: nothing a double holds


def test_the_number_of_frauds_and_the_share_on_request(tmp_path: Path) -> None:
    """`risk_measures` (`--risk-measures`): the share (the default), the number of frauds known, or both;
    anything else, or the option without labels as history, is refused. A model saved before the
    option says what its labels give (the number)."""
    import hashlib
    import json

    df = terminals(days=20)
    kw = {"label_column": "is_fraud", "id_column": "tx", "entity_columns": ("terminal_id",), "label_delay": "2d",
          "epochs": 2, "seed": 0}
    both = FraudVAE(**kw, risk_measures=("share", "frauds")).fit(df)
    risk = [n for n in both.schema_.names() if "known in" in n]
    assert risk == ["terminal_id: fraud share known in 1d", "terminal_id: frauds known in 1d"]
    assert FraudVAE.load(both.save(tmp_path / "both")).risk_measures == ("share", "frauds")
    with pytest.raises(ConfigError, match="share, frauds or both"):
        FraudVAE(**kw, risk_measures=("rate",)).fit(df)
    with pytest.raises(ConfigError, match="needs --label-delay"):
        FraudVAE(**{k: v for k, v in kw.items() if k != "label_delay"}, risk_measures=("frauds",)).fit(df)
    # the command line; the number alone keeps the window spanning the delay (models saved before the share)
    df.to_csv(tmp_path / "t.csv", index=False)
    assert main(["fit", str(tmp_path / "t.csv"), "--model", str(tmp_path / "n"), "--label-column", "is_fraud",
                 "--id-column", "tx", "--entity-column", "terminal_id", "--time-column", "when", "--label-delay",
                 "2d", "--risk-measures", "frauds", "--epochs", "2", "--quiet"]) == 0
    number = FraudVAE.load(tmp_path / "n")
    assert [n for n in number.schema_.names() if "known in" in n] == ["terminal_id: frauds known in 7d"]
    meta = json.loads((tmp_path / "n" / "model.json").read_text())
    del meta["params"]["risk_measures"]  # as a model saved before the option
    (tmp_path / "n" / "model.json").write_text(json.dumps(meta))
    manifest = json.loads((tmp_path / "n" / "manifest.json").read_text())
    manifest["files"]["model.json"] = hashlib.sha256((tmp_path / "n" / "model.json").read_bytes()).hexdigest()
    (tmp_path / "n" / "manifest.json").write_text(json.dumps(manifest))
    assert FraudVAE.load(tmp_path / "n").risk_measures == ("frauds",)
