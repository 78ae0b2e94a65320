"""Expression transfer (the paper's Fig. 4): identity of face A, expression of face B.

    g_A = G_enc(x_A)                 identity code of A
    y_B = classifier(x_B)            B's expression label (or given by the user)
    c_B = Q(x_B, y_B)                B's expression code, estimated by the regulariser Q
    x   = G_dec(g_A, c_B)

Because ``c_B`` is a continuous code (not a one-hot label), B's *intensity/style* of the
expression is transferred too, not just its class.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TransferResult", "transfer"]


@dataclass
class TransferResult:
    """``result`` ``(N,3,S,S)`` in [-1,1]; ``code`` is Q's ``c_B`` ``(N,C)``; ``labels`` B's labels."""

    result: Tensor
    code: Tensor
    labels: Tensor


@torch.no_grad()
def transfer(editor, identity: Tensor, expression: Tensor, labels: Tensor | int) -> TransferResult:
    """Decode A's identity (``identity`` ``(N,3,S,S)`` in [-1,1]) with the expression code that
    Q estimates from ``expression`` (``(N,3,S,S)`` or ``(1,3,S,S)``, broadcast) and ``labels``."""
    if identity.dim() == 3:
        identity = identity[None]
    if expression.dim() == 3:
        expression = expression[None]
    if expression.shape[0] == 1 and identity.shape[0] > 1:
        expression = expression.expand(identity.shape[0], -1, -1, -1)
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.numel() == 1:
        labels = labels.expand(expression.shape[0])
    g = editor.encode(identity)
    c = editor.code_from_image(expression, labels)
    return TransferResult(result=editor.decode(g, c, source=identity).cpu(), code=c.cpu(), labels=labels.cpu())
