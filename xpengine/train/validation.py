"""Validation during training: the fixed validation stars on the device and their metrics (NLL per
label element and robust σ of the residuals), for `xpengine.train.loop.train`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from xpengine.datasets.schema import TrainingArrays
from xpengine.model.context import predict_standardized
from xpengine.model.loss import gaussian_nll
from xpengine.model.standardize import Standardization, robust_sigma
from xpengine.model.transformer import XPTransformer
from xpengine.train.config import TrainConfig

__all__ = ["ValidationSet"]

logger = logging.getLogger("xpengine.train.loop")  # the loop's log, as before this class moved here


@dataclass
class ValidationSet:
    """Fixed validation inputs on the device and the physical truth of the labels."""

    values: torch.Tensor  # (Nv, T) standardised, NaN = missing
    errors: torch.Tensor  # (Nv, T) standardised
    truth: np.ndarray  # (Nv, Q) physical
    input_cols: torch.Tensor  # (C,)
    label_cols: torch.Tensor  # (Q,)
    label_names: list[str]

    @classmethod
    def build(
        cls,
        arrays: TrainingArrays | None,
        std: Standardization,
        inputs: list[str],
        labels: list[str],
        config: TrainConfig,
        device: torch.device,
    ) -> ValidationSet | None:
        if arrays is None or len(arrays.source_id) == 0:
            logger.warning("no validation set: validation metrics will not be computed")
            return None
        if not inputs or not labels:
            logger.warning("validation needs val_inputs and val_labels; got %s and %s", inputs, labels)
            return None
        n = len(arrays.source_id) if config.val_max_stars is None else config.val_max_stars
        vocab = arrays.vocabulary
        li = vocab.indices(labels)
        z, e = std.transform(arrays.values[:n], np.nan_to_num(arrays.errors[:n]))
        return cls(
            values=torch.from_numpy(z).to(device),
            errors=torch.from_numpy(e).to(device),
            truth=arrays.values[:n][:, li].astype(np.float64),
            input_cols=torch.tensor(vocab.indices(inputs), dtype=torch.int64, device=device),
            label_cols=torch.tensor(li, dtype=torch.int64, device=device),
            label_names=labels,
        )

    def evaluate(
        self, model: XPTransformer, std: Standardization, amp_dtype: torch.dtype | None, batch_size: int
    ) -> dict[str, float]:
        """Validation NLL per label element and robust σ (1.4826 MAD of truth − prediction, physical)."""
        model.eval()
        mean_z, logvar_z, _ = predict_standardized(
            model,
            self.values,
            self.input_cols,
            self.label_cols,
            batch_size=batch_size,
            autocast_dtype=amp_dtype,
        )  # (Nv, Q)
        target = self.values.index_select(1, self.label_cols)  # (Nv, Q)
        err = self.errors.index_select(1, self.label_cols)  # (Nv, Q)
        mask = torch.isfinite(target) & torch.isfinite(mean_z)  # (Nv, Q)
        n_el = int(mask.sum().item())
        nll = gaussian_nll(target, mean_z, logvar_z, err, mask) * target.shape[0] / max(n_el, 1)
        cols = self.label_cols.cpu().numpy()
        pred, _ = std.inverse(mean_z.cpu().numpy(), None, cols)  # (Nv, Q) physical
        resid = self.truth - pred  # (Nv, Q)
        out: dict[str, float] = {"val_nll": float(nll.item())}
        sig = robust_sigma(resid, axis=0)  # (Q,)
        for j, name in enumerate(self.label_names):
            out[f"val_sigma_{name}"] = float(sig[j])
            if name == "ln_age":  # the paper quotes the age scatter in Gyr
                out["val_sigma_age"] = float(robust_sigma(np.exp(self.truth[:, j]) - np.exp(pred[:, j])))
        return out
