"""Several students' runs trained together in one process (`torch.func.stack_module_state` +
`vmap`) against the same runs one after another (issue "The class as one team").

`--runs` copies of the course's cnn (each its own seed and its own batch order, as students' runs
are), one epoch of `--images` shapes images each, batch 64, Adam:
- one after another: each run's plain training step (forward, loss, backward, step), channels-last
  as the app trains a conv net;
- stacked: the runs' weights stacked into one tensor per parameter, one step computes every run's
  loss on its own batch with `vmap` (a conv becomes one grouped conv), and one Adam steps them all
  (Adam works element by element, so that is one Adam per run).
Images per second of each, interleaved round by round (medians), and whether the stacked runs end
with the same weights as the runs one after another (the app's run cache and replays need a run's
numbers to be the same wherever it trains).

    python benchmarks/stacked_runs.py
    python benchmarks/stacked_runs.py --runs 4 --threads 1 --rounds 3
"""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from _common import emit, machine, median, parser


def make_runs(n: int, data, model_name: str):
    from vision_lab.models import create_model

    runs = []
    for i in range(n):
        torch.manual_seed(1000 + i)
        model = create_model(model_name, num_classes=len(data.classes), in_channels=data.channels,
                             image_size=data.image_size)
        runs.append(model.to(memory_format=torch.channels_last))
    return runs


def batches(data, n_runs: int, batch: int, images: int) -> list[torch.Tensor]:
    """Each run's batch order (its own permutation), as index tensors [n_runs, steps, batch]."""
    orders = [torch.randperm(images, generator=torch.Generator().manual_seed(i)) for i in range(n_runs)]
    steps = images // batch
    return torch.stack([o[:steps * batch].view(steps, batch) for o in orders])


def normalized(data, images: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = data.train_images[:images].float() / 255
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return (x - mean) / std, data.train_labels[:images]


def one_after_another(models, x, y, order) -> float:
    t = time.perf_counter()
    for k, model in enumerate(models):
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for idx in order[k]:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
    return time.perf_counter() - t


def stacked(models, x, y, order) -> tuple[float, dict]:
    from torch.func import functional_call, stack_module_state, vmap

    params, buffers = stack_module_state(models)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    base.train()
    optimizer = torch.optim.Adam(params.values(), lr=1e-3)

    def loss_of(p, b, xb, yb):
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    losses = vmap(loss_of, randomness="different")
    t = time.perf_counter()
    for step in range(order.shape[1]):
        idx = order[:, step]                       # [runs, batch]
        optimizer.zero_grad(set_to_none=True)
        losses(params, buffers, x[idx], y[idx]).sum().backward()
        optimizer.step()
    return time.perf_counter() - t, params


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4, help="students' runs trained together")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--model", default="cnn")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.images, args.rounds, args.model = 2, 128, 1, "mlp"
    if args.threads:
        torch.set_num_threads(args.threads)
    from vision_lab.datasets import load_dataset

    data = load_dataset("shapes", n_train=args.images, n_test=10, seed=0, val_fraction=0.0)
    x, y = normalized(data, args.images)
    order = batches(data, args.runs, 64 if not args.quick else 32, args.images)
    seen = args.runs * order.shape[1] * order.shape[2]
    alone, together, same = [], [], None
    for _ in range(args.rounds + 1):   # the first round warms up, not counted
        models = make_runs(args.runs, data, args.model)
        models_b = [copy.deepcopy(m) for m in models]
        seconds_alone = one_after_another(models, x, y, order)
        seconds_together, params = stacked(models_b, x, y, order)
        alone.append(seen / seconds_alone)
        together.append(seen / seconds_together)
        same = all(torch.equal(params[name][k], dict(m.named_parameters())[name].detach())
                   for k, m in enumerate(models) for name in params)
    alone, together = alone[1:], together[1:]
    result = {"machine": machine(), "runs": args.runs, "images": args.images, "model": args.model,
              "threads": torch.get_num_threads(), "rounds": args.rounds,
              "one_after_another_images_per_sec": median(alone),
              "stacked_images_per_sec": median(together),
              "stacked_vs_one_after_another": median([b / a for a, b in zip(alone, together)]),
              "stacked_weights_identical": bool(same)}
    rows = [(k, float(v), "") for k, v in result.items() if isinstance(v, (int, float))
            and not isinstance(v, bool)]
    rows.append(("stacked_weights_identical", str(same), "the app needs True"))
    emit("stacked_runs", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
