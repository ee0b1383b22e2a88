"""History features as what is beyond the ordinary (`HistorySpec.excess`): 0 for an entity doing what
it always does, a point mass the model learns as one; models saved before keep their raw features."""

import numpy as np
import pandas as pd

from fraudvae import FraudVAE
from fraudvae.history import HistorySpec, HistoryState, amount_prior, derive

START = pd.Timestamp("2024-03-01")
DAY = 86400.0


def steady(n_cards: int = 40, days: int = 40, seed: int = 0, run_card: int | None = None) -> pd.DataFrame:
    """Cards making about three purchases a day of their usual size; `run_card` spends five times its
    usual on every other purchase from day 30 (a compromised card)."""
    rng = np.random.default_rng(seed)
    rows = []
    for card in range(n_cards):
        usual = rng.lognormal(3.0, 1.0)
        for k, s in enumerate(np.sort(rng.uniform(0, days * DAY, rng.poisson(3 * days)))):
            amount = usual * rng.lognormal(0, 0.2)
            if card == run_card and s > 30 * DAY and k % 2 == 0:
                amount *= 5
            rows.append((card, START + pd.Timedelta(seconds=float(s)), amount))
    df = pd.DataFrame(rows, columns=["card_id", "when", "amount"])
    return df.sort_values("when", kind="stable").reset_index(drop=True)


def spec(**kw) -> HistorySpec:
    """The specification `fit` makes for `steady` data: the population's usual amount, and the share
    of amounts beyond the usual that chance gives there (`test_fit_learns_the_share_chance_gives`)."""
    kw = {"amount_prior": amount_prior(steady()["amount"].to_numpy()), "by_chance": 0.08} | kw
    return HistorySpec(("card_id",), "when", "amount", **kw)


def test_an_entity_doing_what_it_always_does_is_at_zero() -> None:
    df = steady()
    f = derive(spec(), df, HistoryState.empty(spec()))
    assert spec().names() == ["card_id: tx in 1h above pace", "card_id: tx in 1d above pace",
                              "card_id: tx in 7d above pace", "card_id: amount beyond 30d usual",
                              "card_id: amounts beyond usual in 7d"]
    late = (df["when"] > START + pd.Timedelta(days=10)).to_numpy()
    for name, x in f.items():
        ok = x[late]
        assert np.isfinite(ok).all() and np.mean(ok == 0) > 0.8, (name, np.mean(ok == 0))


def test_a_run_of_large_amounts_shows_on_the_card_and_a_burst_in_its_counts() -> None:
    df = steady(run_card=5)
    burst = pd.DataFrame({"card_id": 9, "when": [START + pd.Timedelta(days=35, seconds=60 * k) for k in range(8)],
                          "amount": df.loc[df["card_id"] == 9, "amount"].iloc[0]})
    df = pd.concat([df, burst]).sort_values("when", kind="stable").reset_index(drop=True)
    f = derive(spec(), df, HistoryState.empty(spec()))
    t, card = df["when"], df["card_id"].to_numpy()
    run = f["card_id: amounts beyond usual in 7d"]
    during = (card == 5) & (t > START + pd.Timedelta(days=35)).to_numpy()
    others = (card != 5) & (t > START + pd.Timedelta(days=35)).to_numpy()
    assert run[during].mean() > 2 * run[others].mean() and np.mean(run[others] > 0) < 0.15
    big = f["card_id: amount beyond 30d usual"]
    assert np.all(big[during & (df["amount"] > 3 * df.groupby("card_id")["amount"].transform("median"))] > 2)
    in_burst = (card == 9) & t.between(burst["when"].iloc[4], burst["when"].iloc[-1]).to_numpy()
    assert in_burst.sum() >= 4
    assert np.all(f["card_id: tx in 1h above pace"][in_burst] > 0)


def test_a_spec_saved_before_reads_as_it_was() -> None:
    old = {k: v for k, v in spec().to_dict().items() if k != "excess"}
    s = HistorySpec.from_dict(old)
    assert not s.excess and s.atoms() == [] and s.count_windows == s.windows
    assert s.names() == ["card_id: tx in 1h", "card_id: tx in 1d", "card_id: tx in 7d", "card_id: tx in 30d",
                         "card_id: hours since previous", "card_id: amount vs 30d usual"]
    assert "excess" not in s.to_dict() and s.key() == spec(excess=False).key() != spec().key()
    f = derive(s, steady(), HistoryState.empty(s))
    assert set(f) == set(s.names())


def test_the_features_are_point_masses_and_a_never_seen_burst_is_kept() -> None:
    df = steady(days=45)
    m = FraudVAE(entity_columns=("card_id",), epochs=5, seed=0).fit(df)
    atoms = {n: s.point_mass for n, s in m.preprocessor_.numeric.items() if n.startswith("card_id: ")}
    assert atoms and all(a == 0.0 for a in atoms.values()), atoms
    assert "card_id: tx in 1h above pace" in m.schema_.names()  # 0 throughout training, kept: later news
    assert all(m.preprocessor_.numeric[n].gap_says_nothing for n in atoms)


def test_fit_learns_the_share_chance_gives() -> None:
    m = FraudVAE(entity_columns=("card_id",), epochs=1, seed=0).fit(steady())
    assert 0.05 < m.history_.spec.by_chance < 0.11  # lognormal amounts: more beyond 2 spreads above than 2.5%


def test_one_window_keeps_its_count() -> None:
    s = spec(windows=(3600.0,))
    assert s.names() == ["card_id: tx in 1h"] and s.run_window is None
    f = derive(s, steady(), HistoryState.empty(s))
    assert np.nanmax(f["card_id: tx in 1h"]) > 0


def test_transactions_of_one_time_leave_the_same_run_whichever_arrives_first() -> None:
    """The service applies concurrent requests in the order they reach the store: a burst of one card
    at one second must leave the same state (its run of amounts beyond the usual included) in any
    order, as the clipped amounts already did. Models saved before judged each amount against the
    usual after the burst's earlier ones (the order mattered) and read as they were."""
    history = steady(n_cards=3, days=20)
    burst = pd.DataFrame({"card_id": 1, "when": START + pd.Timedelta(days=20, hours=1),
                          "amount": np.linspace(5.0, 400.0, 40)})

    def state_after(s: HistorySpec, order: np.ndarray) -> np.ndarray:
        state = HistoryState.empty(s)
        derive(s, history, state)
        derive(s, burst.iloc[order].reset_index(drop=True), state)
        return state.tables["card_id"].counts[state.tables["card_id"].index["1"]]

    rising, falling = np.arange(40), np.arange(40)[::-1]
    assert spec().run_before_time
    np.testing.assert_allclose(state_after(spec(), rising), state_after(spec(), falling), rtol=1e-12)
    old = HistorySpec.from_dict({k: v for k, v in spec().to_dict().items() if k != "run_before_time"})
    assert not old.run_before_time and old.key() == spec(run_before_time=False).key() != spec().key()
    assert state_after(old, rising)[-1] != state_after(old, falling)[-1]  # what the fix is for
