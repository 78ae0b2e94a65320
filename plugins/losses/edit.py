"""``edit``: train the edits themselves, not only reconstructions (not in the paper).

The paper trains stages 2 and 3 on reconstructions only: every image is decoded with a code of
its *own* label, and editing (another label's code on the same identity code) is never seen
during training. When the encoder leaks the expression into the identity code, the decoder can
learn to read it from there, and edits keep the source expression. This term decodes each
identity code a second time with the code of *another* sample of the batch (the batch's codes
rolled by one, so the pair (code, label) is one the controller really drew and the step stays
deterministic) and asks the conditional D_img to accept it as that label and Q to recover the
code, exactly as the ``adv-img`` and ``q`` terms do for reconstructions.

Cost: one more decoder pass and one more D_img pass per G step and per D step.

Measured once on the quick scale (48x48, 1350 steps, batch-norm networks, ``adv = 0.1``): it did
not help at equal steps (test expression of edits 65% against 67%, identity kept 14% against 34%)
and made the run 1.7x slower, so no shipped recipe uses it; it is there to try at GPU scale.
"""
from __future__ import annotations

from torch import Tensor, nn

from facegan_kit import StepContext, bce_logits, decode


class EditLoss(nn.Module):
    """``edit``: conditional adversarial + Q loss on cross-expression edits.

    - G side: ``adv * bce(D_img(x_edit, y'), 1) + q * Q_loss(x_edit, c')``.
    - D side: ``adv * bce(D_img(x_edit.detach(), y'), 0) + q * Q_loss(x_edit.detach(), c')``.

    where ``x_edit = decoder(g, c')`` and ``(c', y')`` is the batch's (code, label) rolled by one.

    Args:
        adv: weight of the adversarial part (relative to the term's weight in the stage).
        q: weight of the Q part.
    """

    needs: tuple[str, ...] = ("d_img", "q")
    requires_encoder: bool = False

    def __init__(self, adv: float = 1.0, q: float = 1.0) -> None:
        super().__init__()
        if adv < 0 or q < 0 or adv + q == 0:
            raise ValueError(f"edit: adv and q must be >= 0 and not both 0, got adv={adv}, q={q}")
        self.adv, self.q = float(adv), float(q)

    @staticmethod
    def _edit(ctx: StepContext) -> tuple[Tensor, Tensor, Tensor]:
        """(x_edit with its graph, c', y'), once per step (shared by the D and G phases)."""
        def make():
            c_new, y_new = ctx.c.roll(1, 0), ctx.y.roll(1, 0)
            return decode(ctx.models["decoder"], ctx.g, c_new, ctx.x_in), c_new, y_new
        # step_cache, not memo: the D step's decoder pass (and its graph) is reused by the G step
        if "edit" not in ctx.step_cache:
            ctx.step_cache["edit"] = make()
        return ctx.step_cache["edit"]

    def _loss(self, ctx: StepContext, real: bool, detach: bool) -> Tensor:
        x_edit, c_new, y_new = self._edit(ctx)
        x_in = x_edit.detach() if detach else x_edit
        logit, features = ctx.memo(f"edit/d_img/{detach}", lambda: ctx.models["d_img"](x_in, y_new))
        total = x_edit.new_zeros(())
        if self.adv:
            total = total + self.adv * bce_logits(logit, 1.0 if real else 0.0)
        if self.q:
            q = ctx.models["q"]
            controller = ctx.models.get("controller")
            target = controller.target(c_new, y_new) if controller is not None else c_new
            total = total + self.q * q.loss(q(features), target.detach())
        return total

    def g_loss(self, ctx: StepContext) -> Tensor:
        return self._loss(ctx, real=True, detach=False)

    def d_loss(self, ctx: StepContext) -> Tensor:
        return self._loss(ctx, real=False, detach=True)
