"""Training losses, created by name for a task: ``create_loss(name, task, **params)(output, batch)``.

Every loss honours ``batch.target_mask`` and the task's ``ignore_value``: masked clips / frames / targets
never contribute, and a batch without any valid target gives a zero loss that still carries the graph
(so ``loss.backward()`` works and changes nothing).

Shapes accepted (``B`` batch, ``T`` steps, ``K`` targets or classes):

* regression: ``output.preds`` ``(B, K)`` or ``(B, T, K)``; ``batch.targets`` the same, float;
  ``batch.target_mask`` ``(B,)`` / ``(B, T)`` (per clip / frame) or the targets' full shape (per target).
  A target equal to ``task.ignore_value`` or not finite is masked as well (Aff-Wild2 labels -5);
* classification: ``output.preds`` logits ``(B, K)`` or ``(B, T, K)``; ``batch.targets`` int64 class indices
  ``(B,)`` / ``(B, T)``; ``batch.target_mask`` of the targets' shape; indices equal to ``ignore_value`` or
  outside ``[0, K)`` are masked.

Losses (the ``LOSSES`` registry):

* ``mse`` — mean over targets of the per-target MSE on the raw predictions (ViPER: "average MSE loss among
  emotions", no activation);
* ``ccc`` — ``1 - CCC`` per target over all valid frames of the batch, averaged over targets with population
  statistics; ``reduction="sum"``, ``std="unbiased"`` are the authors' ``CCCLoss`` (JMT, eq. 3: the valence and
  arousal losses added, ``torch.std`` unbiased), the ``jmt_va`` recipe's setting;
* ``mse_ce`` — ABAW5-ERI (HFUT-MAC): MSE on ``sigmoid(preds)`` plus ``ce_weight`` (0.01) × cross-entropy of
  the auxiliary head ``output.logits`` ``(B, C)`` against the dominant emotion. ``ce_target="argmax"``
  (default) uses the argmax of the targets; ``ce_target="authors"`` reproduces the released code exactly:
  ``CrossEntropyLoss(logits, (targets == 1).float())``, i.e. unnormalised multi-hot *probability* targets
  of every emotion at the maximum 1 of the max-normalised Hume-Reaction labels (a row with two maxima counts
  twice, a row whose maximum is not exactly 1 contributes nothing);
* ``cross_entropy`` — with ``label_smoothing`` (the VGAF end-to-end paper uses 0.2) and optional class
  ``weight``;
* ``focal`` — ``-alpha_t (1 - p_t)^gamma log p_t`` (ABAW5 expression, eq. 9), ``gamma`` 2, ``alpha`` None,
  a float (same for every class) or one weight per class.

Each loss says what the model's outputs mean once trained with it: its ``activation`` (``"none"``: the raw
outputs are the predictions; ``"sigmoid"``: ``mse_ce`` trains ``sigmoid(preds)``; ``"softmax"``: logits of the
classification losses). Training and inference turn outputs into predictions with it
(:class:`affectfuse.tasks.postprocess.PostProcess`) and never look at a loss's name.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from affectfuse.tasks.spec import TaskSpec, get_task
from affectfuse.types import Batch, ModelOutput

__all__ = ["LOSSES", "create_loss", "list_losses", "Loss"]

Loss = Callable[[ModelOutput, Batch], torch.Tensor]


# -- masks ------------------------------------------------------------------------------------------
def _zero(preds: torch.Tensor) -> torch.Tensor:
    """A zero that keeps the graph (no valid target in the batch)."""
    return preds.sum() * 0.0


def _regression_view(task: TaskSpec, output: ModelOutput, batch: Batch, owner: str
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten predictions, targets and the per-element validity of a regression batch.

    Shape:
        preds ``(B, [T,] K)``, targets the same, target_mask ``(B, [T])`` or ``(B, [T,] K)`` →
        preds ``(N, K)``, targets ``(N, K)`` (invalid entries zeroed), valid ``(N, K)`` bool.
    """
    preds, targets = output.preds, batch.targets
    if targets is None:
        raise ValueError(f"loss {owner!r}: the batch carries no targets (an inference batch?)")
    targets = torch.as_tensor(targets, device=preds.device)
    if preds.shape != targets.shape:
        raise ValueError(f"loss {owner!r} (task {task.name!r}): predictions {tuple(preds.shape)} and targets "
                         f"{tuple(targets.shape)} must have the same shape (B, K) or (B, T, K)")
    k = preds.shape[-1]
    valid = torch.isfinite(targets)
    if task.ignore_value is not None:
        valid &= targets != task.ignore_value
    if batch.target_mask is not None:
        m = torch.as_tensor(batch.target_mask, device=preds.device).bool()
        if m.shape == targets.shape[:-1]:
            m = m.unsqueeze(-1)  # (B, [T,] 1)
        elif m.shape != targets.shape:
            raise ValueError(f"loss {owner!r}: target_mask {tuple(m.shape)} must be {tuple(targets.shape[:-1])} "
                             f"or {tuple(targets.shape)}")
        valid &= m
    targets = torch.where(valid, targets, torch.zeros_like(targets)).to(preds.dtype)
    return preds.reshape(-1, k), targets.reshape(-1, k), valid.reshape(-1, k)


def _classification_view(task: TaskSpec, logits: torch.Tensor, batch: Batch, owner: str
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid logits and class indices of a classification batch.

    Shape:
        logits ``(B, [T,] K)``, targets ``(B, [T])`` int, target_mask ``(B, [T])`` → logits ``(N, K)``,
        targets ``(N,)`` int64 (valid rows only).
    """
    if batch.targets is None:
        raise ValueError(f"loss {owner!r}: the batch carries no targets (an inference batch?)")
    targets = torch.as_tensor(batch.targets, device=logits.device)
    if targets.is_floating_point():
        raise TypeError(f"loss {owner!r} (task {task.name!r}): classification targets must be int64 class "
                        f"indices, got {targets.dtype}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"loss {owner!r} (task {task.name!r}): logits {tuple(logits.shape)} need targets of shape "
                         f"{tuple(logits.shape[:-1])}, got {tuple(targets.shape)}")
    k = logits.shape[-1]
    valid = (targets >= 0) & (targets < k)
    if task.ignore_value is not None:
        valid &= targets != int(task.ignore_value)
    if batch.target_mask is not None:
        m = torch.as_tensor(batch.target_mask, device=logits.device).bool()
        if m.shape != targets.shape:
            raise ValueError(f"loss {owner!r}: target_mask {tuple(m.shape)} must match targets {tuple(targets.shape)}")
        valid &= m
    valid = valid.reshape(-1)
    return logits.reshape(-1, k)[valid], targets.reshape(-1).long()[valid]


def masked_mse(preds: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over targets (columns with a valid entry) of the per-column MSE over valid entries.

    Shape:
        preds, targets, valid ``(N, K)`` → scalar.
    """
    w = valid.to(preds.dtype)  # (N, K)
    count = w.sum(0)  # (K,)
    per_col = ((preds - targets) ** 2 * w).sum(0) / count.clamp(min=1.0)  # (K,)
    has = count > 0
    if not bool(has.any()):
        return _zero(preds)
    return per_col[has].mean()


def masked_ccc(preds: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, eps: float = 1e-8,
               unbiased: bool = False) -> torch.Tensor:
    """Per-column concordance correlation over valid entries.

    Args:
        unbiased: (co)variances divided by ``n - 1`` (``torch.std``'s default, what JMT's ``CCCLoss`` uses) instead
            of ``n`` (population statistics, the metric's definition); the means are the same.

    Shape:
        preds, targets, valid ``(N, K)`` → ``(K,)``; a column without valid entries gives 0.
    """
    w = valid.to(preds.dtype)  # (N, K)
    count = w.sum(0)  # (K,)
    n = count.clamp(min=1.0)
    mx = (preds * w).sum(0) / n  # (K,)
    my = (targets * w).sum(0) / n  # (K,)
    dx, dy = (preds - mx) * w, (targets - my) * w  # (N, K)
    div = (count - 1.0).clamp(min=1.0) if unbiased else n
    vx, vy, cov = (dx**2).sum(0) / div, (dy**2).sum(0) / div, (dx * dy).sum(0) / div  # (K,)
    return 2.0 * cov / (vx + vy + (mx - my) ** 2 + eps)  # (K,)


# -- losses ------------------------------------------------------------------------------------------
class MSELoss:
    """Mean over targets of the per-target MSE on raw predictions (ViPER)."""

    name = "mse"
    activation = "none"

    def __init__(self, task: TaskSpec) -> None:
        self.task = task

    def __call__(self, output: ModelOutput, batch: Batch) -> torch.Tensor:
        p, t, v = _regression_view(self.task, output, batch, self.name)
        return masked_mse(p, t, v)


class CCCLoss:
    """``1 - CCC`` per target over every valid frame of the batch, combined over targets (JMT, eq. 3).

    Args:
        eps: added to the denominator (a constant prediction on constant targets gives loss 1, not NaN).
        reduction: ``"mean"`` over the targets (default) or ``"sum"`` (the authors' code adds the valence and
            arousal losses: twice the gradient, which their grid-searched learning rate assumes).
        std: ``"population"`` (divide by ``n``, the metric's definition; default) or ``"unbiased"``
            (``n - 1``, the ``torch.std`` of the authors' ``CCCLoss``).
    """

    name = "ccc"
    activation = "none"

    def __init__(self, task: TaskSpec, eps: float = 1e-8, reduction: str = "mean", std: str = "population") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"ccc loss: reduction must be 'mean' or 'sum', got {reduction!r}")
        if std not in ("population", "unbiased"):
            raise ValueError(f"ccc loss: std must be 'population' or 'unbiased', got {std!r}")
        self.task, self.eps, self.reduction, self.unbiased = task, float(eps), reduction, std == "unbiased"

    def __call__(self, output: ModelOutput, batch: Batch) -> torch.Tensor:
        p, t, v = _regression_view(self.task, output, batch, self.name)
        has = v.any(0)  # (K,)
        if not bool(has.any()):
            return _zero(p)
        loss = 1.0 - masked_ccc(p, t, v, self.eps, unbiased=self.unbiased)[has]  # (K',)
        return loss.sum() if self.reduction == "sum" else loss.mean()


class MSECELoss:
    """ABAW5-ERI: ``MSE(sigmoid(preds), y) + ce_weight * CE(logits, dominant emotion)``.

    Args:
        ce_weight: weight of the classification term (the authors' ``cri_weight``, 0.01).
        ce_target: ``"argmax"`` (one class per clip: the argmax of the targets) or ``"authors"``
            (``(targets == 1)`` as unnormalised probability targets, as in the released code).
    """

    name = "mse_ce"
    activation = "sigmoid"

    def __init__(self, task: TaskSpec, ce_weight: float = 0.01, ce_target: str = "argmax") -> None:
        if ce_target not in ("argmax", "authors"):
            raise ValueError(f"loss 'mse_ce': ce_target must be 'argmax' or 'authors', got {ce_target!r}")
        self.task, self.ce_weight, self.ce_target = task, float(ce_weight), ce_target

    def __call__(self, output: ModelOutput, batch: Batch) -> torch.Tensor:
        sig = ModelOutput(preds=torch.sigmoid(output.preds))
        p, t, v = _regression_view(self.task, sig, batch, self.name)  # (N, K)
        loss = masked_mse(p, t, v)
        if self.ce_weight == 0.0:
            return loss
        logits = output.logits
        if logits is None:
            raise ValueError("loss 'mse_ce': the model returned no auxiliary logits (ModelOutput.logits); "
                             "use loss 'mse' or a model with a class head")
        if logits.dim() != 2 or output.preds.dim() != 2 or logits.shape[1] != output.preds.shape[1]:
            raise ValueError(f"loss 'mse_ce': expects clip-level preds (B, K) and logits (B, K); got preds "
                             f"{tuple(output.preds.shape)}, logits {tuple(logits.shape)}")
        rows = v.all(1)  # (B,) clips whose every target is valid
        if not bool(rows.any()):
            return loss + _zero(logits)
        y = torch.as_tensor(batch.targets, device=logits.device)[rows].to(logits.dtype)  # (B', K)
        if self.ce_target == "argmax":
            ce = F.cross_entropy(logits[rows], y.argmax(1))
        else:
            ce = F.cross_entropy(logits[rows], (y == 1).to(logits.dtype))
        return loss + self.ce_weight * ce


class CrossEntropyLoss:
    """Cross-entropy over valid clips / frames.

    Args:
        label_smoothing: as in ``torch.nn.functional.cross_entropy`` (VGAF end-to-end paper: 0.2).
        weight: optional per-class weights (K values).
    """

    name = "cross_entropy"
    activation = "softmax"

    def __init__(self, task: TaskSpec, label_smoothing: float = 0.0, weight: Sequence[float] | None = None) -> None:
        self.task, self.label_smoothing = task, float(label_smoothing)
        self.weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        if self.weight is not None and self.weight.shape != (task.num_outputs,):
            raise ValueError(f"loss 'cross_entropy': weight needs {task.num_outputs} values, got {list(weight)}")

    def __call__(self, output: ModelOutput, batch: Batch) -> torch.Tensor:
        logits, y = _classification_view(self.task, output.preds, batch, self.name)  # (N, K), (N,)
        if y.numel() == 0:
            return _zero(output.preds)
        w = None if self.weight is None else self.weight.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, y, weight=w, label_smoothing=self.label_smoothing)


class FocalLoss:
    """Focal loss ``-alpha_t (1 - p_t)^gamma log p_t``, mean over valid clips / frames.

    Args:
        gamma: focusing parameter (2).
        alpha: None (no weighting), a float used for every class, or one weight per class.
    """

    name = "focal"
    activation = "softmax"

    def __init__(self, task: TaskSpec, gamma: float = 2.0, alpha: float | Sequence[float] | None = None) -> None:
        self.task, self.gamma = task, float(gamma)
        if alpha is None:
            self.alpha = None
        else:
            a = torch.as_tensor(alpha, dtype=torch.float32)
            if a.dim() == 0:
                a = a.expand(task.num_outputs).clone()
            if a.shape != (task.num_outputs,):
                raise ValueError(f"loss 'focal': alpha must be a float or {task.num_outputs} values, got {alpha}")
            self.alpha = a

    def __call__(self, output: ModelOutput, batch: Batch) -> torch.Tensor:
        logits, y = _classification_view(self.task, output.preds, batch, self.name)  # (N, K), (N,)
        if y.numel() == 0:
            return _zero(output.preds)
        logp = F.log_softmax(logits.float(), dim=-1).gather(1, y[:, None]).squeeze(1)  # (N,)
        loss = -((1.0 - logp.exp()).clamp(min=0.0) ** self.gamma) * logp  # (N,)
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.device)[y]
        return loss.mean().to(output.preds.dtype)


LOSSES: dict[str, type] = {
    "mse": MSELoss,
    "ccc": CCCLoss,
    "mse_ce": MSECELoss,
    "cross_entropy": CrossEntropyLoss,
    "focal": FocalLoss,
}
_PROBLEM = {"mse": "regression", "ccc": "regression", "mse_ce": "regression",
            "cross_entropy": "multiclass", "focal": "multiclass"}


def list_losses() -> list[str]:
    return sorted(LOSSES)


def create_loss(name: str | None, task: "str | TaskSpec", **params: Any) -> Loss:
    """A loss callable ``(output: ModelOutput, batch: Batch) -> scalar tensor``.

    Args:
        name: a name in ``LOSSES``; None uses the task's default (``task.loss``).
        task: a built-in task name or a :class:`TaskSpec`.
        **params: the loss's own parameters (e.g. ``label_smoothing=0.2``, ``gamma=2``, ``ce_weight=0.01``).

    Raises:
        KeyError: unknown name. ValueError: the loss does not fit the task's problem.
        TypeError: unknown parameters (the message lists the accepted ones).
    """
    task = get_task(task)
    name = name or task.loss
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; available: {', '.join(sorted(LOSSES))}")
    if _PROBLEM[name] != task.problem:
        raise ValueError(f"loss {name!r} is for {_PROBLEM[name]} tasks; task {task.name!r} is {task.problem}")
    cls = LOSSES[name]
    import inspect

    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "task")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"loss {name!r}: unknown parameter(s) {unknown}; accepted: {accepted}")
    return cls(task, **params)
