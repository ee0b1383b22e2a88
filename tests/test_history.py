"""History features (`fraudvae.history`): each transaction against its entities' strictly earlier ones."""

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudvae import ConfigError, DataError, FraudVAE, SchemaError
from fraudvae.cli import main
from fraudvae.history import HistorySpec, HistoryState, derive

START = pd.Timestamp("2024-03-01")


def cards(n_cards: int = 50, days: int = 20, seed: int = 0, burst: bool = True) -> pd.DataFrame:
    """Card transactions over `days`: each card its own usual amount and merchants, about three a
    day; with `burst`, card 7 makes 12 purchases of its usual size within 10 minutes on the last day."""
    rng = np.random.default_rng(seed)
    rows = []
    for card in range(n_cards):
        usual = rng.lognormal(3.0, 1.0)
        shops = rng.choice([f"m{k}" for k in range(30)], 3, replace=False)
        t = np.sort(rng.uniform(0, days * 86400, rng.poisson(3 * days)))
        for s in t:
            rows.append((card, START + pd.Timedelta(seconds=float(s)), usual * rng.lognormal(0, 0.3),
                         rng.choice(shops), 0))
    if burst:
        at = START + pd.Timedelta(days=days - 0.5)
        base = [r for r in rows if r[0] == 7]
        for k in range(12):
            rows.append((7, at + pd.Timedelta(seconds=50 * k), base[k][2], base[0][3], 1))
    df = pd.DataFrame(rows, columns=["card_id", "when", "amount", "merchant", "planted"])
    df = df.sort_values("when", kind="stable").reset_index(drop=True)
    df.insert(0, "tx", [f"t{i:05d}" for i in range(len(df))])
    df["when"] = df["when"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return df


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return cards()


@pytest.fixture(scope="module")
def fitted(data: pd.DataFrame) -> FraudVAE:
    train = data[pd.to_datetime(data["when"]) < START + pd.Timedelta(days=15)]
    return FraudVAE(id_column="tx", entity_columns=("card_id",), drop=("planted",), epochs=30,
                    seed=0).fit(train)


def test_the_features_are_named_and_the_entity_is_no_input(fitted: FraudVAE) -> None:
    names = fitted.schema_.names()
    assert "card_id" not in names and "card_id" in fitted.schema_.dropped
    for want in ("card_id: tx in 1h above pace", "card_id: tx in 1d above pace", "card_id: tx in 7d above pace",
                 "card_id: amount beyond 90d usual", "card_id: new merchant"):
        assert want in names, want
    spec = fitted.history_.spec
    assert spec.time_column == "when" and spec.amount_column == "amount" and spec.entities == ("card_id",)


def test_appending_later_rows_changes_no_earlier_row(fitted: FraudVAE, data: pd.DataFrame) -> None:
    test = data[pd.to_datetime(data["when"]) >= START + pd.Timedelta(days=15)]
    half = test.iloc[: len(test) // 2]
    a, b = fitted.score_samples(half), fitted.score_samples(test)[: len(half)]
    np.testing.assert_allclose(a, b, rtol=1e-12)
    fa, fb = fitted.with_history(half), fitted.with_history(test).iloc[: len(half)]
    pd.testing.assert_frame_equal(fa, fb)
    # a row never sees itself: its count is its card's earlier rows, never including itself
    spec = HistorySpec(("card_id",), "when", "amount", windows=(86400.0 * 1000,), excess=False)
    f = derive(spec, data, HistoryState.empty(spec))
    order = pd.to_datetime(data["when"]).to_numpy().argsort(kind="stable")
    first = ~data["card_id"].iloc[order].duplicated().to_numpy()
    counts = f["card_id: tx in 1000d"][order]
    assert np.isnan(counts[first]).all()  # a first transaction has no history
    # the second, third, ... transactions of a card count 1, 2, ... before them (scaled up while the
    # history is younger than the window)
    k = data["card_id"].iloc[order].groupby(data["card_id"].iloc[order]).cumcount().to_numpy()
    assert np.all(counts[~first] >= k[~first] - 1e-9) and np.all(counts[~first] <= 10 * k[~first] + 1e-9)


def test_a_burst_on_one_card_is_found_only_with_its_history(fitted: FraudVAE, data: pd.DataFrame) -> None:
    train = data[pd.to_datetime(data["when"]) < START + pd.Timedelta(days=15)]
    test = data[pd.to_datetime(data["when"]) >= START + pd.Timedelta(days=15)]
    burst = test["planted"].to_numpy() == 1
    late = burst & (np.cumsum(burst) > 4)  # the burst's later purchases: many in minutes before them
    with_history = fitted.score_samples(test)
    plain = FraudVAE(id_column="tx", drop=("planted", "card_id"), epochs=30, seed=0).fit(train).score_samples(test)

    def rank(s: np.ndarray) -> float:  # the burst's share of the others it outranks
        return float(np.mean([np.mean(s[~burst] < v) for v in s[late]]))
    assert rank(with_history) > 0.98 and rank(plain) < 0.9


def test_a_first_transaction_is_compared_with_everyone(fitted: FraudVAE, data: pd.DataFrame) -> None:
    test = data[pd.to_datetime(data["when"]) >= START + pd.Timedelta(days=15)].head(200)
    newcomer = test.iloc[[0]].assign(card_id=99_999, when="2024-03-16 12:00:00")
    f = fitted.with_history(newcomer)
    assert f[fitted.history_.spec.names()].isna().all(axis=None)  # no history: gaps, nothing to compare with
    s = fitted.score_samples(newcomer)[0]
    assert np.isfinite(s) and s < np.quantile(fitted.score_samples(test), 0.9)  # not fraud for being new
    huge = newcomer.assign(amount=newcomer["amount"] * 1000)  # but a fraud on it still shows in its own columns
    assert fitted.score_samples(huge)[0] > np.quantile(fitted.score_samples(test), 0.99)
    second = pd.concat([newcomer, newcomer.assign(when="2024-03-16 12:05:00")])
    g = fitted.with_history(second).iloc[1]
    assert g["card_id: new merchant"] == 0 and g["card_id: tx in 1h above pace"] == 0  # a second: nothing unusual


def test_unsorted_rows_are_taken_in_time_order_and_answered_in_input_order(fitted: FraudVAE,
                                                                           data: pd.DataFrame) -> None:
    test = data[pd.to_datetime(data["when"]) >= START + pd.Timedelta(days=15)]
    shuffled = test.sample(frac=1.0, random_state=1)
    np.testing.assert_allclose(fitted.score(shuffled)["score"].to_numpy(),
                               fitted.score(test)["score"].reindex(shuffled.index).to_numpy(), rtol=1e-12)


def test_the_saved_history_round_trips(fitted: FraudVAE, data: pd.DataFrame, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "m")
    assert (path / "history.json").exists()
    loaded = FraudVAE.load(path)
    test = data.tail(300)
    np.testing.assert_array_equal(loaded.score_samples(test), fitted.score_samples(test))
    assert loaded.version_ == fitted.version_
    # a model without entity columns writes what it always wrote
    plain = FraudVAE(epochs=2, drop=("planted", "card_id")).fit(data.head(500)).save(tmp_path / "plain")
    assert sorted(p.name for p in plain.iterdir()) == ["manifest.json", "model.json", "weights.safetensors"]
    assert "history" not in json.loads((plain / "model.json").read_text())


def test_replay_then_score_equals_scoring_both_in_one(fitted: FraudVAE, data: pd.DataFrame, tmp_path: Path) -> None:
    test = data[pd.to_datetime(data["when"]) >= START + pd.Timedelta(days=15)]
    a, b = test.iloc[: len(test) // 2], test.iloc[len(test) // 2:]
    whole = fitted.score_samples(test)[len(a):]
    again = FraudVAE.load(fitted.save(tmp_path / "m"))
    np.testing.assert_allclose(again.replay(a).score_samples(b), whole, rtol=1e-12)


def test_the_command_line_continues_the_history(data: pd.DataFrame, tmp_path: Path, capsys) -> None:
    when = pd.to_datetime(data["when"])
    data[when < START + pd.Timedelta(days=15)].to_csv(tmp_path / "train.csv", index=False)
    test = data[when >= START + pd.Timedelta(days=15)]
    test.to_csv(tmp_path / "test.csv", index=False)
    test.iloc[: len(test) // 2].to_csv(tmp_path / "a.csv", index=False)
    test.iloc[len(test) // 2:].to_csv(tmp_path / "b.csv", index=False)
    assert main(["fit", str(tmp_path / "train.csv"), "--model", str(tmp_path / "m"), "--id-column", "tx",
                 "--drop", "planted", "--entity-column", "card_id", "--time-column", "when", "--epochs", "10",
                 "--quiet", "--windows", "1h,1d,7d"]) == 0
    out = capsys.readouterr().out
    assert "card_id: tx in 1h" in out and "history: card_id (50 entities)" in out and "MB saved" in out
    scores = {}
    for rows in (7, 1000):
        assert main(["score", str(tmp_path / "test.csv"), "--model", str(tmp_path / "m"), "--output",
                     str(tmp_path / f"s{rows}.csv"), "--chunk-rows", str(rows), "--quiet", "--explain"]) == 0
        scores[rows] = pd.read_csv(tmp_path / f"s{rows}.csv")
    pd.testing.assert_frame_equal(scores[7], scores[1000])
    assert main(["score", str(tmp_path / "b.csv"), "--model", str(tmp_path / "m"), "--history", str(tmp_path / "a.csv"),
                 "--output", str(tmp_path / "b_out.csv"), "--quiet"]) == 0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "b_out.csv")["score"].to_numpy(),
                               scores[7]["score"].to_numpy()[len(test) // 2:], rtol=2e-9)
    assert main(["evaluate", str(tmp_path / "test.csv"), "--model", str(tmp_path / "m"), "--label-column", "planted",
                 "--report", str(tmp_path / "ev"), "--time-column", "when", "--alerts-per-day", "5"]) == 0
    daily = json.loads((tmp_path / "ev" / "metrics.json").read_text())["daily"]
    assert daily["card_precision_entity"] == "card_id" and 0 <= daily["mean_card_precision_at_k"] <= 1


@pytest.mark.parametrize("change, said", [
    (lambda d: d.drop(columns="card_id"), "missing column(s) the model's history needs: 'card_id'"),
    (lambda d: d.assign(when=d["when"].where(d.index != d.index[3], "soon")), "'when'"),
    (lambda d: d.assign(when=d["when"].where(d.index != d.index[3], None)), "no time at"),
])
def test_bad_history_input_is_named(fitted: FraudVAE, data: pd.DataFrame, change, said: str) -> None:
    with pytest.raises(SchemaError, match=said.replace("(", r"\(").replace(")", r"\)")):
        fitted.score(change(data.tail(50).copy()))


def test_an_entity_needs_a_time_column_and_an_id_is_no_number(data: pd.DataFrame) -> None:
    no_time = data.drop(columns="when").head(400)
    with pytest.raises(ConfigError, match="needs a time column"):
        FraudVAE(entity_columns=("card_id",), drop=("planted",), epochs=1).fit(no_time)
    many = data.head(800).assign(card_id=np.arange(800) % 150)
    with pytest.raises(DataError, match=r"--entity-column card_id.*--drop card_id.*--numeric card_id"):
        FraudVAE(drop=("planted",), epochs=1).fit(many)
    FraudVAE(drop=("planted",), numeric=("card_id",), epochs=1).fit(many)  # insisted on


def test_the_service_and_spark_refuse_a_model_with_history(fitted: FraudVAE, data: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="history"):
        fitted.encode_columns({c: list(data[c].head(2)) for c in data.columns}, 2)


def test_reasons_say_the_history_in_words(fitted: FraudVAE, data: pd.DataFrame) -> None:
    test = data[pd.to_datetime(data["when"]) >= START + pd.Timedelta(days=15)]
    burst = test[test["planted"] == 1]  # 12 in 10 minutes, the last 3 explained
    texts = [r.text() for row in fitted.reason_codes(pd.concat([test[test["planted"] == 0], burst]))[-3:]
             for r in row]
    assert any(re.fullmatch(r"card_id [\d.]+ more transactions in the last (1h|1d) than its pace allows "
                            r"\(typical none more for [\d.]+% of transactions\)", t) for t in texts), texts
    big = test[test["planted"] == 0].tail(1)
    big = big.assign(amount=big["amount"] * 20)
    texts = [r.text() for r in fitted.reason_codes(pd.concat([test[test["planted"] == 0].iloc[:-1], big]))[-1]]
    assert any(re.fullmatch(r"card_id: amount [\d.]+ spreads above its 90d usual \(typical within 2 spreads "
                            r"for [\d.]+% of transactions\)", t) for t in texts), texts


def test_transactions_the_history_holds_already_are_refused(fitted: FraudVAE, data: pd.DataFrame,
                                                            tmp_path: Path, capsys) -> None:
    """Scoring the training file again (or an earlier one) would count its transactions a second time on
    top of the history saved from them: every card would look twice as busy. Most of a file before the
    end of the model's history is refused, naming the time column; a few late transactions among later
    ones are scored as such."""
    when = pd.to_datetime(data["when"])
    train, later = data[when < START + pd.Timedelta(days=15)], data[when >= START + pd.Timedelta(days=15)]
    for earlier in (train, pd.concat([train.tail(len(later) + 5), later])):
        with pytest.raises(DataError, match="come before the end of the history the model holds") as e:
            fitted.score(earlier)
        assert e.value.column == "when"
    with pytest.raises(DataError, match="scoring them would count each a second time"):
        fitted.replay(train.copy())
    with pytest.raises(DataError, match="before the end of the --history transactions"):  # fit: the same mistake
        FraudVAE(id_column="tx", entity_columns=("card_id",), drop=("planted",), epochs=1).fit(train, history=train)
    late = pd.concat([train.tail(3), later])  # three late transactions among the next days'
    assert np.isfinite(fitted.score(late)["score"]).all()
    # the command line says it, exit 2, no traceback
    fitted.save(tmp_path / "m")
    train.to_csv(tmp_path / "train.csv", index=False)
    assert main(["score", str(tmp_path / "train.csv"), "--model", str(tmp_path / "m"), "--output",
                 str(tmp_path / "s.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "transactions come before the end of the history" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


def test_the_usual_amount_has_its_own_window(data: pd.DataFrame) -> None:
    """The usual is kept over 90 days (or the longest window, if longer) unless `usual_window` says
    otherwise; a shorter one than 7 days is refused; a specification saved before the option reads
    its usual over the longest window, under the key it had (its stored states stay its own)."""
    train = data.head(1500)
    fit = FraudVAE(id_column="tx", entity_columns=("card_id",), drop=("planted",), epochs=1,
                   usual_window="30d").fit(train)
    assert fit.history_.spec.long_windows == (30 * 86400.0,)
    assert "card_id: amount beyond 30d usual" in fit.schema_.names()
    longer = FraudVAE(id_column="tx", entity_columns=("card_id",), drop=("planted",), epochs=1,
                      windows=("1h", "7d", "180d")).fit(train)
    assert longer.history_.spec.usual_window == 180 * 86400.0 == longer.history_.spec.horizon
    with pytest.raises(ConfigError, match=r"--usual-window '2d'.*7d or more"):
        FraudVAE(entity_columns=("card_id",), drop=("planted",), epochs=1, usual_window="2d").fit(train)
    with pytest.raises(ConfigError, match="--usual-window"):
        FraudVAE(entity_columns=("card_id",), drop=("planted",), epochs=1, usual_window="soon").fit(train)
    saved = {k: v for k, v in fit.history_.spec.to_dict().items() if k not in ("usual_window", "prior_weight")}
    old = HistorySpec.from_dict(saved)
    assert old.usual_window is None and old.long_windows == (30 * 86400.0,) and old.to_dict() == saved
    assert old.prior_weight == 3.0 and fit.history_.spec.prior_weight == 1.0
    assert old.key() != fit.history_.spec.key() and HistorySpec.from_dict(old.to_dict()).key() == old.key()


def test_a_small_spender_is_judged_by_its_own_spread() -> None:
    """The population's spread, worth `prior_weight` transactions, widens an entity's own: a card
    that always spends about 10 (the population about 100) is judged by its own spread more with the
    weight of one transaction than of three, so five times its usual lies further out."""
    rng = np.random.default_rng(0)
    n = 200
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * 8, unit="h")
    df = pd.DataFrame({"card_id": "a", "when": when.strftime("%Y-%m-%d %H:%M:%S"),
                       "amount": np.r_[rng.normal(10, 2, n - 1), 50.0]})
    spec = HistorySpec(("card_id",), "when", "amount", amount_prior=(100.0, 60.0), time_format="%Y-%m-%d %H:%M:%S")
    name = "card_id: amount beyond 30d usual"
    beyond = {w: derive(replace(spec, prior_weight=w), df, HistoryState.empty(spec))[name][-1] for w in (1.0, 3.0)}
    assert spec.prior_weight == 1.0 and beyond[1.0] > 1.3 * beyond[3.0] > 0
