"""Runs inside RecBole's own venv (``bench/train_speed_recbole.py`` starts it): trains RecBole's SASRec
with the given config and writes what ``bench/train_speed.py`` records.

Usage: ``python train_speed_recbole_run.py CONFIG.json RESULT.json THREADS`` in a work folder.
Imports recbole's parts directly: ``recbole.quick_start`` imports ray, which this venv leaves out.
Each training and validation pass is timed (wall and CPU) by wrapping the trainer's own epoch methods;
the test is RecBole's own (``test_unmasked``) and one with the user's earlier items masked, as ours.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any


def timed(wall: list[float], cpu: list[float], method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` that appends its wall and CPU seconds to ``wall`` and ``cpu`` on every call."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, start_cpu = time.perf_counter(), time.process_time()
        out = method(*args, **kwargs)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        return out
    return wrapper


def masked_test(model: Any, dataset: Any, test_data: Any, inter_path: str) -> dict[str, float]:
    """Test metrics of ``model`` with each user's earlier items masked out of the ranking, as ours.

    RecBole's own full-sort evaluation of a sequential model masks only the padding id. The history
    is read from the ``.inter`` file (the dataset's own copy holds prefixes after its augmentation).
    The target's score is taken before masking, so an item bought again still counts, as in ours.
    """
    import numpy as np
    import torch

    with open(inter_path) as f:
        rows = [line.split("\t")[:2] for line in f.readlines()[1:]]
    users = dataset.token2id(dataset.uid_field, [r[0] for r in rows])
    items = dataset.token2id(dataset.iid_field, [r[1] for r in rows])
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    offsets = np.searchsorted(users, np.arange(dataset.user_num + 1))
    ranks = []
    model.eval()
    with torch.no_grad():
        for interaction, _, _, targets in test_data:
            scores = model.full_sort_predict(interaction)  # [B, items + 1]
            target_scores = scores[torch.arange(len(targets)), targets]
            scores[:, 0] = -torch.inf
            uids = interaction[dataset.uid_field].numpy()
            spans = [np.arange(offsets[u], offsets[u + 1]) for u in uids]
            rows_of = np.concatenate([np.full(len(span), i) for i, span in enumerate(spans)])
            scores[torch.from_numpy(rows_of), torch.from_numpy(items[np.concatenate(spans)])] = -torch.inf
            ranks.append((scores > target_scores[:, None]).sum(1))
    rank = torch.cat(ranks).double()
    out = {}
    for k in (10, 20):
        hit = rank < k
        out[f"recall@{k}"] = hit.double().mean().item()
        out[f"ndcg@{k}"] = torch.where(hit, 1 / torch.log2(rank + 2), 0.0).mean().item()
    return out


def main() -> None:
    config_path, result_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.argv = sys.argv[:1]  # recbole's Config reads --key=value settings from the command line
    import numpy
    import recbole  # type: ignore[import-not-found]
    import torch
    from recbole.config import Config  # type: ignore[import-not-found]
    from recbole.data import create_dataset, data_preparation  # type: ignore[import-not-found]
    from recbole.utils import get_model, get_trainer, init_seed  # type: ignore[import-not-found]

    torch.set_num_threads(threads)
    with open(config_path) as f:
        settings = json.load(f)
    start = time.perf_counter()
    config = Config(model=settings["model"], dataset=settings["dataset"], config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    prepare_seconds = time.perf_counter() - start

    seconds: dict[str, list[float]] = {k: [] for k in ("train", "train_cpu", "valid", "valid_cpu")}
    valid_scores: list[float] = []
    trainer._train_epoch = timed(seconds["train"], seconds["train_cpu"], trainer._train_epoch)
    valid_epoch = timed(seconds["valid"], seconds["valid_cpu"], trainer._valid_epoch)

    def validate(*args: Any, **kwargs: Any) -> Any:
        score, result = valid_epoch(*args, **kwargs)
        valid_scores.append(float(score))
        return score, result

    trainer._valid_epoch = validate
    start = time.perf_counter()
    _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_seconds = time.perf_counter() - start
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)  # loads the best epoch
    inter_path = os.path.join(config["data_path"], f"{config['dataset']}.inter")
    best = max(valid_scores)
    result = {
        "prepare_seconds": prepare_seconds, "fit_seconds": fit_seconds,
        **{f"{k}_seconds": v for k, v in seconds.items()}, "valid_ndcg@20": valid_scores,
        # RecBole keeps the later epoch on a tie (its early_stopping compares with >=)
        "best_epoch": max(i for i, s in enumerate(valid_scores, 1) if s == best),
        "valid": {k: float(v) for k, v in best_valid.items()}, "test_unmasked": {k: float(v) for k, v in test.items()},
        "test": masked_test(trainer.model, dataset, test_data, inter_path),
        "users": dataset.user_num - 1, "items": dataset.item_num - 1,  # less the padding id
        "test_users": test_data._dataset.inter_num,
        "train_targets": train_data._dataset.inter_num, "train_batches": len(train_data),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": numpy.__version__},
        "torch_threads": torch.get_num_threads(),
    }
    with open(result_path, "w") as f:
        json.dump(result, f, indent=2, allow_nan=False)


if __name__ == "__main__":
    main()
