"""How well a model does on a set of images: loss, accuracy, confusion matrix, worst mistakes.

Training measures the validation images every epoch and the test images once, at the end, with
`evaluate`; the CLI's `evaluate` command and the benchmarks call it on a checkpoint. Images stay
uint8 until they reach the model's device (`normalize_on_device`); `tta_logits` averages the
logits over test-time views of each image. In a distributed run each process measures a share
of the images and `evaluate_shared` adds the shares up.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import distributed
from .preprocessing import Preprocessing


@dataclass
class EvalResult:
    loss: float
    acc: float
    confusion: list[list[int]]     # rows: true class, columns: predicted
    per_class_acc: list[float]
    most_confused: list[dict]      # the most confidently wrong: index, true, predicted, prob

    def to_dict(self) -> dict:
        return {"test_loss": self.loss, "test_acc": self.acc, "per_class_acc": self.per_class_acc,
                "confusion": self.confusion}


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             prep: Preprocessing, num_classes: int, batch_size: int = 500, device="cpu",
             worst_k: int = 16, stop: threading.Event | None = None,
             tta: str = "none") -> EvalResult | None:
    """Loss, accuracy, confusion matrix and most confidently wrong examples on uint8 images.

    `tta` averages the logits over test-time views of each image (see `tta_logits`). Returns None
    if `stop` is set midway, so a Stop press never waits for a whole test pass.
    """
    model.eval()
    total_loss, confusion = 0.0, torch.zeros(num_classes, num_classes, dtype=torch.long)
    wrong_prob, wrong_idx, wrong_pred = [], [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            if stop is not None and stop.is_set():
                return None
            # The uint8 images move (4x smaller than floats), then are normalised where they land.
            x = normalize_on_device(prep, images[start:start + batch_size].to(device).float())
            y = labels[start:start + batch_size].to(device)
            logits = tta_logits(model, x, tta)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            prob, pred = logits.softmax(1).max(1)
            y, pred, prob = y.cpu(), pred.cpu(), prob.cpu()
            confusion += torch.bincount(y * num_classes + pred, minlength=num_classes ** 2
                                        ).view(num_classes, num_classes)
            wrong = pred != y
            wrong_prob.append(prob[wrong])
            wrong_pred.append(pred[wrong])
            wrong_idx.append(torch.nonzero(wrong).flatten() + start)
    n = max(len(images), 1)
    correct = confusion.diag()
    per_class = (correct.float() / confusion.sum(1).clamp(min=1)).tolist()
    most_confused = []
    if wrong_prob:
        probs, preds, idxs = torch.cat(wrong_prob), torch.cat(wrong_pred), torch.cat(wrong_idx)
        for j in probs.argsort(descending=True)[:worst_k].tolist():
            i = int(idxs[j])
            most_confused.append({"index": i, "true": int(labels[i]), "predicted": int(preds[j]),
                                  "prob": float(probs[j])})
    return EvalResult(loss=total_loss / n, acc=correct.sum().item() / n,
                      confusion=confusion.tolist(), per_class_acc=per_class,
                      most_confused=most_confused)


def tta_logits(model: torch.nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """The model's logits, averaged over test-time views of each image: with "flip" the image
    and its mirror image; with "shift" the image (half the weight) and the image moved one pixel
    diagonally each way (a quarter each), as airbench does. torch.roll brings the row and column
    that leave one side back on the other: at one pixel, on images with plain borders, that
    changes nothing that matters."""
    logits = model(x)
    if tta == "flip":
        return (logits + model(x.flip(-1))) / 2
    if tta == "shift":
        moved = [model(torch.roll(x, shifts=(d, d), dims=(-2, -1))) for d in (1, -1)]
        return 0.5 * logits + 0.25 * (moved[0] + moved[1])
    return logits


def normalize_on_device(prep: Preprocessing, x: torch.Tensor) -> torch.Tensor:
    """`prep.normalize_pixels_(x)` on whatever device x is on. Preprocessing makes its few
    constants with torch.tensor(), which puts them on the CPU; a device context puts them beside
    x instead (a CPU batch takes exactly the usual path)."""
    if x.device.type == "cpu":
        return prep.normalize_pixels_(x)
    if prep.permutation_seed is not None:
        prep.permute(torch.zeros(1, 1, prep.image_size, prep.image_size))  # made and cached on the CPU
    with torch.device(x.device):
        return prep.normalize_pixels_(x)


def evaluate_shared(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    prep: Preprocessing, num_classes: int, group: distributed.Group, device,
                    worst_k: int = 16, tta: str = "none") -> EvalResult:
    """`evaluate` in a distributed run: each process takes every W-th image and the sums make the
    split's figures. (A Stop waits for the next step: the processes must stay in step.)"""
    distributed.share_buffers(model, group)
    mine = slice(group.rank, None, group.world_size)
    part = evaluate(model, images[mine], labels[mine], prep, num_classes,
                    device=device, worst_k=worst_k, tta=tta)
    n_mine = len(labels[mine])
    loss_sum, n = distributed.sum_across(group, [part.loss * n_mine, n_mine])
    confusion = distributed.sum_tensor(group, torch.tensor(part.confusion))
    # Image i of this process's share is image i * W + rank of the split.
    wrong = [{**w, "index": w["index"] * group.world_size + group.rank} for w in part.most_confused]
    wrong = sorted((w for share in distributed.gather(group, wrong) for w in share),
                   key=lambda w: -w["prob"])[:worst_k]
    correct = confusion.diag()
    return EvalResult(loss=loss_sum / max(n, 1), acc=correct.sum().item() / max(n, 1),
                      confusion=confusion.tolist(),
                      per_class_acc=(correct.float() / confusion.sum(1).clamp(min=1)).tolist(),
                      most_confused=wrong)
