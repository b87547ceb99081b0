"""Inside a training run: each layer's weights, activations and gradient norm, once per epoch.

`InternalsRecorder` watches the layers that hold weights (Conv, Linear, BatchNorm) and, at the end
of every epoch, hands `training.train` one plain, JSON-ready dict (the `internals` of its EpochEnd):

- weights: a few percentiles, the standard deviation and a small histogram of each layer's weight,
  summarised from a fixed sample of its values (sorting a million weights each epoch would cost
  more than the rest of the recording together);
- activations: the same summary of each layer's output on the first ACTIVATION_IMAGES validation
  images. They are caught by forward hooks during the validation pass the epoch makes anyway, so
  they cost no extra forward pass (a run without validation images makes one, on training images);
- gradient norm: the L2 norm of each layer's gradient, averaged over every GRAD_EVERY-th step of
  the epoch, read after backward and added up where the gradients live (no sync per step).

Everything is measured on fixed samples, so two epochs (or two runs) are compared like with like.
The cost is measured by `benchmarks/internals.py` (the budget: 3% of training throughput).
Figures keep four significant digits: an epoch of the CNN's record is about 4 KB of JSON, and
runs are kept as JSON (the run cache, the shipped replays).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import nn

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
SAMPLE = 4096                 # values per tensor that a summary looks at
BINS = 24                     # histogram bins per summary
ACTIVATION_IMAGES = 256       # validation images whose activations are summarised
GRAD_EVERY = 8                # the gradient norm is read at every GRAD_EVERY-th step of an epoch
LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d,
               nn.BatchNorm3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def recorded_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers whose internals are recorded, in the order the model defines them (for the
    models here, the order an image flows through them)."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, LAYER_TYPES) and getattr(m, "weight", None) is not None]


def _sample(values: torch.Tensor) -> torch.Tensor:
    """At most SAMPLE of the tensor's values as float32 on the CPU, drawn at the same positions
    every time for a tensor of the same size (a fixed seed), so epochs compare like with like."""
    flat = values.detach()
    if flat.dim() == 4 and flat.is_contiguous(memory_format=torch.channels_last):
        flat = flat.permute(0, 2, 3, 1)   # a view, where reshape would copy the whole tensor
    flat = flat.reshape(-1)
    if flat.numel() > SAMPLE:
        picks = torch.randint(flat.numel(), (SAMPLE,), generator=torch.Generator().manual_seed(0))
        # index_select, not flat[picks]: on a busy 2-core CPU advanced indexing wakes a second
        # thread and took 8 ms where this takes 5 µs.
        flat = flat.index_select(0, picks.to(flat.device))
    return flat.float().cpu()


def _short(value: float) -> float:
    """Four significant digits: plenty for a plot, and half the JSON of a full float."""
    return float(f"{value:.4g}")


def summarise(values: torch.Tensor) -> dict:
    """Percentiles (PERCENTILES), standard deviation, and a BINS-bin histogram over the sample's
    own range: plain floats and ints, ready for JSON."""
    x = _sample(values)
    finite = torch.isfinite(x)
    if not finite.all():      # a diverging run: summarise what is still a number (masking is slow)
        x = x[finite]
    if x.numel() == 0:
        return {"percentiles": [None] * len(PERCENTILES), "std": None,
                "hist": {"lo": None, "hi": None, "counts": [0] * BINS}}
    q = [_short(v) for v in torch.quantile(x, torch.tensor(PERCENTILES, dtype=torch.float32) / 100).tolist()]
    lo, hi = float(x.min()), float(x.max())
    # histc needs a range: a constant tensor gets one of its own width around the value.
    width = hi - lo if hi > lo else max(abs(lo), 1.0) * 1e-6
    # Bins by hand: torch.histc takes milliseconds on a CPU for a few thousand values.
    bins = ((x - lo) * (BINS / width)).long().clamp_(0, BINS - 1)
    counts = torch.bincount(bins, minlength=BINS).tolist()
    std = _short(float(x.std())) if x.numel() > 1 else 0.0
    return {"percentiles": q, "std": std, "hist": {"lo": _short(lo), "hi": _short(lo + width), "counts": counts}}


class InternalsRecorder:
    """Records one model's internals during a run; `epoch_record()` returns and resets them."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers = recorded_layers(model)
        self._step = 0                                  # steps of this epoch so far
        self._grad_sums: torch.Tensor | None = None     # per layer: sum of sampled gradient norms
        self._grad_counts: torch.Tensor | None = None   # per layer: steps summed
        self._activations: dict[str, dict] = {}
        self.activation_images = 0

    # ---- gradients ----------------------------------------------------------------------------

    def after_backward(self, scale: float | Callable[[], float] = 1.0) -> None:
        """Call after backward, before the optimizer step. `scale` is a loss scaler's factor, or
        its get_scale (asked only at the steps that are read: on a GPU it waits for the GPU)."""
        self._step += 1
        if (self._step - 1) % GRAD_EVERY:
            return
        scale = scale() if callable(scale) else scale
        norms, seen = [], []
        for _, layer in self.layers:
            grads = [p.grad for p in layer.parameters(recurse=False) if p.grad is not None]
            if grads:
                # The layer's norm over all its parameters: sqrt of the sum of their squared norms.
                norms.append(torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(g.detach().float()) for g in grads])))
            else:
                norms.append(torch.zeros((), device=self._device()))  # frozen: no gradient
            seen.append(bool(grads))
        step_norms = torch.stack(norms) / scale
        seen = torch.tensor(seen, dtype=torch.float32, device=step_norms.device)
        if self._grad_sums is None:
            self._grad_sums, self._grad_counts = torch.zeros_like(step_norms), torch.zeros_like(seen)
        self._grad_sums += step_norms
        self._grad_counts += seen

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- activations --------------------------------------------------------------------------

    @contextlib.contextmanager
    def watching_activations(self) -> Iterator[None]:
        """While this block runs, the first forward call's outputs of every recorded layer (on its
        first ACTIVATION_IMAGES images) are summarised; later calls (more batches, test-time
        views) are left alone."""
        self._activations = {}
        handles = [layer.register_forward_hook(self._hook(name)) for name, layer in self.layers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if name not in self._activations and isinstance(output, torch.Tensor):
                images = output[:ACTIVATION_IMAGES]
                self.activation_images = len(images)
                self._activations[name] = summarise(images)
        return hook

    def has_activations(self) -> bool:
        return bool(self._activations)

    def record_activations(self, model_input: torch.Tensor) -> None:
        """Summarise activations with a forward pass of its own (for a run without validation
        images): evaluation mode, no gradients, so training is left exactly as it was."""
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode(), self.watching_activations():
            self.model(model_input[:ACTIVATION_IMAGES])
        self.model.train(was_training)

    # ---- the epoch's record ---------------------------------------------------------------------

    def epoch_record(self) -> dict:
        """This epoch's internals, JSON-ready; the gradient and activation records start afresh."""
        grads = [None] * len(self.layers)
        if self._grad_sums is not None:
            sums, counts = self._grad_sums.tolist(), self._grad_counts.tolist()
            grads = [_short(s / c) if c else None for s, c in zip(sums, counts)]
        with torch.no_grad():
            layers = [{"name": name, "kind": type(layer).__name__,
                       "weight": summarise(layer.weight),
                       "activation": self._activations.get(name),
                       "grad_norm": grad}
                      for (name, layer), grad in zip(self.layers, grads)]
        record = {"percentiles": list(PERCENTILES), "activation_images": self.activation_images,
                  "grad_steps": int(self._grad_counts.max()) if self._grad_counts is not None else 0,
                  "layers": layers}
        self._step, self._grad_sums, self._grad_counts, self._activations = 0, None, None, {}
        return record


# ---- reading records ------------------------------------------------------------------------------

def handed_on_spread(record: dict) -> list[tuple[str, float | None]]:
    """(layer name, standard deviation of what it hands on) for each Conv/Linear layer of one
    epoch's record: its output, or its BatchNorm's output where one follows it. This is the
    spread the next layer sees, the one BatchNorm holds steady."""
    spread: list[tuple[str, float | None]] = []
    for layer in record.get("layers", []):
        std = (layer.get("activation") or {}).get("std")
        if layer["kind"].startswith("BatchNorm"):
            if spread:
                spread[-1] = (spread[-1][0], std)
        else:
            spread.append((layer["name"], std))
    return spread


def connection_layers(record: dict) -> list[dict]:
    """The layers of one epoch's record that connect (Conv, Linear): a BatchNorm's scale is no
    connection weight."""
    return [layer for layer in record.get("layers", []) if not layer["kind"].startswith("BatchNorm")]


def _connection_weights(record: dict) -> list[dict]:
    return [layer["weight"] for layer in connection_layers(record)
            if layer.get("weight") and None not in layer["weight"]["percentiles"]]


NEAR_ZERO = 0.05   # of a layer's 99th-percentile weight magnitude


def near_zero_share(record: dict) -> float | None:
    """The share of connection weights near zero, the mean over the Conv/Linear layers of one
    epoch's record: within NEAR_ZERO of the layer's largest weights (its 1st/99th percentile
    magnitude), read off its recorded percentiles (the distribution between them taken as
    linear). Relative to the layer's own scale, so weights that all shrink alike (L2) are no
    sparser, while L1, which pushes most of them to zero and leaves a few, is. About 5% for
    freshly initialised (uniform) weights."""
    import numpy as np

    weights = _connection_weights(record)
    if not weights:
        return None
    shares = []
    for w in weights:
        q, p = np.asarray(w["percentiles"], float), np.asarray(record["percentiles"], float) / 100
        edge = NEAR_ZERO * max(abs(q[0]), abs(q[-1]))
        below, above = np.interp([-edge, edge], q, p, left=0.0, right=1.0)
        shares.append(float(above - below))
    return sum(shares) / len(shares)


def weight_size(record: dict) -> float | None:
    """How large the connection weights are: the mean over the Conv/Linear layers of one epoch's
    record of their standard deviation (their mean is near zero, so this is their typical
    magnitude). L2 (weight decay) pulls it down."""
    sizes = [w["std"] for w in _connection_weights(record) if w.get("std") is not None]
    return sum(sizes) / len(sizes) if sizes else None
