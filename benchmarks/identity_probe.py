"""What limits identity at the quick scale? A stage-2-like autoencoder probe, judged by the oracles.

Trains the quick recipe's encoder + decoder (32 px, batch norm) on reconstruction only (L1, the
controller's random code of the image's own label, as stage 2 does), optionally with the identity
feature loss on ``synthetic-id`` (``--id-weight``), then reports the share of reconstructions of 8
test and 8 training subjects whose oracle-predicted attributes are nearest their own subject
(chance 12.5%). About 0.2 s a step on one core.

    python benchmarks/identity_probe.py --steps 600 --id-weight 0        # L1 only
    python benchmarks/identity_probe.py --steps 600 --id-weight 1        # + L_id
    python benchmarks/identity_probe.py --steps 1800 --id-weight 1 --subjects 240

Numbers: benchmarks/results/quick-identity-2026-11-27.md.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch.nn import functional as F

from facegan_kit.eval.oracles import load_oracles
from facegan_kit.eval.judges import identity_kept_rate
from facegan_plugins.common.encoder import ConvEncoder
from facegan_plugins.data import synthetic
from facegan_plugins.exprgan.controller import FCtrl
from facegan_plugins.exprgan.decoder import ExprDecoder
from facegan_plugins.identity.synthetic_id import SyntheticId
from facegan_plugins.losses.identity import identity_feature_loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--id-weight", type=float, default=1.0, help="identity loss weight (0: L1 only)")
    p.add_argument("--subjects", type=int, default=80, help="synthetic protocol subjects (10%% are test)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    fd = synthetic(subjects=a.subjects, size=32)
    x_tr, y_tr = fd.train.images.float() / 127.5 - 1, fd.train.expression
    enc = ConvEncoder(32, 50, [32, 64, 128], batch_norm=True)
    dec = ExprDecoder(32, 50, 30, [64, 32, 16], 128, batch_norm=True)
    ctrl = FCtrl(6, 5)
    idnet = SyntheticId(input_size=32) if a.id_weight > 0 else None
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=a.lr, betas=(0.5, 0.999))
    t0 = time.time()
    for step in range(a.steps):
        i = torch.randint(0, len(x_tr), (48,))
        x = x_tr[i]
        x = torch.where((torch.rand(48) < 0.5)[:, None, None, None], x.flip(-1), x)
        r = dec(enc(x), ctrl(F.one_hot(y_tr[i], 6).float()))
        l1 = (r - x).abs().mean()
        loss = l1
        if idnet is not None:
            with torch.no_grad():
                real = idnet.features(x)
            loss = loss + a.id_weight * identity_feature_loss(idnet.features(r), real)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == a.steps - 1:
            print(f"step {step}: l1 {l1.item():.4f} total {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    orc = load_oracles()
    enc.eval()
    dec.eval()
    out = {"steps": a.steps, "id_weight": a.id_weight, "subjects": a.subjects, "seconds": round(time.time() - t0, 1)}
    with torch.no_grad():
        for split in ("test", "train"):
            f = getattr(fd, split)
            sel = torch.nonzero(torch.isin(f.subject, f.subject.unique()[:8])).squeeze(1)
            x = f.images[sel].float() / 127.5 - 1
            codes = torch.stack([ctrl.intensity_code(int(k), 1.0) for k in f.expression[sel]])
            r = dec(enc(x), codes)
            out[f"{split}_recon_identity_kept"] = round(
                identity_kept_rate(orc.attrs(r), orc.attrs(x), f.subject[sel], torch.arange(len(x))), 3)
            out[f"{split}_l1"] = round((r - x).abs().mean().item(), 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
