"""Training under torchrun: two CPU processes (gloo) through the library and through the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from sklearn.metrics import roc_auc_score

from fraudvae import FraudVAE, example_transactions
from fraudvae.cli import main

LIBRARY_FIT = """
import json, sys
import torch.distributed as dist
from safetensors.torch import save_file
from fraudvae import FraudVAE, read_table

dist.init_process_group("gloo")
det = FraudVAE(label_column="is_fraud", id_column="transaction_id", epochs=12, seed=0).fit(read_table(sys.argv[1]))
rank, out = dist.get_rank(), sys.argv[2]
save_file({k: v.contiguous() for k, v in det.model_.state_dict().items()}, f"{out}/rank{rank}.safetensors")
with open(f"{out}/rank{rank}.json", "w") as fh:
    json.dump({"history": det.metrics_["history"], "threshold": det.threshold_.value,
               "preprocessing": det.preprocessor_.to_dict()}, fh)
dist.destroy_process_group()
"""


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ddp")
    example_transactions(rows=3000, fraud_rate=0.03, seed=3).to_csv(d / "train.csv", index=False)
    example_transactions(rows=1500, fraud_rate=0.05, seed=4).to_csv(d / "test.csv", index=False)
    return d


def test_ranks_end_identical(files):
    (files / "script.py").write_text(LIBRARY_FIT)
    r = _torchrun("script.py", str(files / "train.csv"), str(files), cwd=files)
    assert r.returncode == 0, r.stderr[-2000:]
    w0, w1 = load_file(files / "rank0.safetensors"), load_file(files / "rank1.safetensors")
    assert w0.keys() == w1.keys() and all(w0[k].equal(w1[k]) for k in w0)
    m0, m1 = (json.loads((files / f"rank{r}.json").read_text()) for r in (0, 1))
    assert m0 == m1  # same preprocessing, same losses every epoch (so the same early stop), same threshold
    assert len(m0["history"]["val_loss"]) >= 2


def test_cli_under_torchrun_is_as_good_as_one_process(files, capsys):
    r = _torchrun("-m", "fraudvae", "fit", "train.csv", "--model", "m2", "--label-column", "is_fraud",
                  "--id-column", "transaction_id", "--seed", "0", "--quiet", cwd=files)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("saved to") == 1  # rank 0 alone writes and reports
    assert main(["fit", str(files / "train.csv"), "--model", str(files / "m1"), "--label-column", "is_fraud",
                 "--id-column", "transaction_id", "--seed", "0", "--quiet"]) == 0
    test = example_transactions(rows=1500, fraud_rate=0.05, seed=4)
    auc = {m: roc_auc_score(test["is_fraud"], FraudVAE.load(files / m).score(test)["score"]) for m in ("m1", "m2")}
    assert auc["m2"] >= auc["m1"] - 0.03, auc
    assert auc["m2"] > 0.8, auc
    assert sorted(p.name for p in files.iterdir() if p.name.startswith(".")) == []  # no temporary leftovers

