"""Online equals offline for a burst at one time: `fraudvae serve --workers 2` with the embedded store,
then for each of `--cards` new cards 200 concurrent single-transaction requests sharing one timestamp
(amounts 5 to 400, 32 client threads), then one more transaction half an hour later, whose score must
equal `FraudVAE.score_samples` of the card's 201 rows (the state after the burst must not depend on
the order the requests arrived in). Prints each card's relative difference and how many were off.

    python bench/trials/same_time_burst.py [--cards 8]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent))
import history_load as load  # noqa: E402

from fraudvae import FraudVAE  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cards", type=int, default=8)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    FraudVAE(id_column="transaction_id", entity_columns=("card_id",), seed=0, epochs=2).fit(
        load.transactions(20_000, 0, "2024-01-01")).save(tmp / "m")
    det = FraudVAE.load(tmp / "m")
    base = load.transactions(201, 3, "2024-01-21").drop(columns="transaction_id")
    port = load.free_port()
    proc = load.serve(tmp / "m", port, 2, {"FRAUDVAE_STATE_DIR": str(tmp / "state")})
    url = f"http://127.0.0.1:{port}/score"
    off = 0
    try:
        for card in range(a.cards):
            df = base.assign(card_id=900_000 + card, transaction_id=[f"c{card}-{i}" for i in range(len(base))],
                             when=["2024-01-25 12:00:00"] * 200 + ["2024-01-25 12:30:00"],
                             amount=np.round(np.linspace(5, 400, len(base)), 2))
            rows = json.loads(df.to_json(orient="records"))
            with ThreadPoolExecutor(32) as pool:
                codes = list(pool.map(lambda r: httpx.post(url, json={"transactions": [r]}, timeout=30).status_code,
                                      rows[:200]))
            got = httpx.post(url, json={"transactions": [rows[200]]}, timeout=30).json()["results"][0]["score"]
            want = float(det.score_samples(df)[-1])
            rel = abs(got - want) / abs(want)
            off += rel > 2e-9 or codes.count(200) != 200
            print(f"card {card}: {codes.count(200)} of 200 answered 200, the next off by {rel:.1e} relative",
                  flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    print(f"{off} of {a.cards} cards off")
    print("reproduce: python bench/trials/same_time_burst.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
