"""The identity-preserving feature loss (the paper's Eq. 7), ``identity``."""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from facegan_kit import StepContext

#: Backbone factory parameters that may receive ``backbone_weights``, in order of preference.
WEIGHTS_PARAMS = ("weights", "weights_path", "path", "backbone_weights")


def identity_feature_loss(
    fake: Sequence[Tensor], real: Sequence[Tensor], layer_weights: Sequence[float] | None = None
) -> Tensor:
    """``sum_l beta_l * mean |fake_l - real_l|`` over matching feature maps (Eq. 7).

    Args:
        fake: per-layer features of the generated images.
        real: per-layer features of the real images (same shapes).
        layer_weights: ``beta_l`` per layer (default 1 each).

    Shape:
        - Input: lists of ``(N, C_l, H_l, W_l)`` (any matching shapes); Output: scalar.
    """
    if len(fake) != len(real) or not fake:
        raise ValueError(f"identity: got {len(fake)} generated and {len(real)} real feature layers")
    weights = [1.0] * len(fake) if layer_weights is None else list(layer_weights)
    if len(weights) != len(fake):
        raise ValueError(
            f"identity: layer_weights has {len(weights)} entries "
            f"but the backbone gives {len(fake)} layers"
        )
    total = fake[0].new_zeros(())
    for w, f, r in zip(weights, fake, real):
        if f.shape != r.shape:
            raise ValueError(f"identity: feature shapes differ: {tuple(f.shape)} vs {tuple(r.shape)}")
        total = total + float(w) * (f - r.to(f.dtype)).abs().mean()
    return total


class IdentityLoss(nn.Module):
    """``identity``: multi-layer L1 between a frozen face network's features of ``x_hat`` and ``x``.

    The backbone (registry kind ``"backbone"``) is built on first use, frozen and put in eval
    mode; it is deliberately not a registered submodule, so it is neither in ``parameters()`` nor
    in ``state_dict()``, and it is moved to the input's device when used. The real side is
    computed under ``torch.no_grad()``.

    Args:
        backbone: registered backbone name (``dlib-resnet``, ``vggface``, ...).
        backbone_weights: path of the backbone's weights, passed to the backbone factory's
            ``weights``-like parameter; ``None`` uses the backbone's default.
        layer_weights: ``beta_l`` per feature layer (default 1 each).
        registry: the component registry (injected by the recipe builder; default: the
            environment's registry).
        input_size: the backbone's input side. Passed to the backbone factory when it has an
            ``input_size`` parameter (e.g. ``vggface``: 224 as in the paper, 128 to go faster);
            otherwise both images are bilinearly resized to it before the backbone. ``None``:
            the backbone's default.
        cache_real: reuse the real images' features: the backbone is frozen, so the features
            of training image ``i`` (mirrored or not) never change. When the trainer says which
            dataset images a batch holds (``ctx.sample_index``, ``ctx.sample_flip``,
            ``ctx.sample_source``), they are computed once per (image, flip), in fixed chunks of
            the dataset order (so a resumed run computes exactly the same values), and kept on the
            images' device. Halves the backbone work per step after the first epoch.
        cache_mb: the cache's memory budget in MiB; a dataset whose features do not fit is not
            cached (e.g. VGG-Face's early layers at 224 px, about 25 MB per image).

    Shape:
        - ``forward(x_hat, x)``: two ``(N, 3, S, S)`` images in ``[-1, 1]`` -> scalar.
    """

    needs: tuple[str, ...] = ()
    requires_encoder: bool = True

    def __init__(
        self,
        backbone: str = "dlib-resnet",
        backbone_weights: str | None = None,
        layer_weights: Sequence[float] | None = None,
        registry: Any = None,
        input_size: int | None = None,
        cache_real: bool = True,
        cache_mb: int = 2048,
    ) -> None:
        super().__init__()
        if input_size is not None and input_size < 1:
            raise ValueError(f"identity: input_size must be >= 1, got {input_size}")
        if cache_mb < 0:
            raise ValueError(f"identity: cache_mb must be >= 0, got {cache_mb}")
        self.cache_real = bool(cache_real)
        self.cache_mb = int(cache_mb)
        self.__dict__["_cache"] = None  # _RealFeatureCache of the current image source
        self.backbone_name = backbone
        self.backbone_weights = backbone_weights
        self.layer_weights = None if layer_weights is None else [float(w) for w in layer_weights]
        self.input_size = input_size
        self._registry = registry
        self.__dict__["_backbone"] = None  # kept out of nn.Module's registries on purpose
        self._resize = input_size is not None  # False once the backbone resizes by itself

    # -- backbone -----------------------------------------------------------------------------
    @property
    def backbone(self) -> nn.Module:
        """The frozen backbone, built from the registry on first access."""
        if self._backbone is None:
            self.__dict__["_backbone"] = self._build_backbone()
        return self._backbone

    def prepare(self) -> None:
        """Build the backbone now (the trainer calls this before a stage's progress bar starts,
        so that a backbone trained or loaded on first use does not stall the bar's first step)."""
        _ = self.backbone

    def _build_backbone(self) -> nn.Module:
        registry = self._registry
        if registry is None:
            from facegan_kit import default_registry

            registry = default_registry()
        factory = registry.get("backbone", self.backbone_name)
        kwargs: dict[str, Any] = {}
        if self.backbone_weights is not None:
            params = inspect.signature(factory).parameters
            name = next((p for p in WEIGHTS_PARAMS if p in params), None)
            if name is None:
                raise ValueError(
                    f"identity: backbone '{self.backbone_name}' takes no weights parameter "
                    f"(looked for {', '.join(WEIGHTS_PARAMS)}); remove backbone_weights"
                )
            kwargs[name] = self.backbone_weights
        if self.input_size is not None and "input_size" in inspect.signature(factory).parameters:
            kwargs["input_size"] = self.input_size
            self._resize = False
        net = factory(**kwargs)
        if isinstance(net, nn.Module):
            net.requires_grad_(False).eval()
        return net

    def _features(self, x: Tensor) -> list[Tensor]:
        net = self.backbone
        if isinstance(net, nn.Module):
            net.to(x.device)
        if self._resize and x.shape[-1] != self.input_size:
            size = (self.input_size, self.input_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return list(net.features(x))

    # -- loss ---------------------------------------------------------------------------------
    def real_features(self, x: Tensor, key: Any = None, source: Any = None) -> list[Tensor]:
        """Backbone features of real images, without gradient.

        ``key = (index, flip)``: the dataset indices (CPU int64) of ``x``'s rows and their flip
        mask (bool, or None for no flipping); ``source``: ``source(index) -> unflipped images``
        with ``len(source)`` images (:class:`facegan_kit.train.batches.ImageSource`). With both
        (and ``cache_real``) the features come from the cache; otherwise they are computed.
        """
        if self.cache_real and source is not None and isinstance(key, tuple) and len(key) == 2:
            cache = self._cache_for(source, x.device if x is not None else getattr(source, "device", "cpu"))
            if cache is not None:
                feats = cache.lookup(key[0], key[1])
                if feats is not None:
                    return feats
        with torch.no_grad():
            return [f.detach() for f in self._features(x)]

    def fill_cache(self, source: Any, device: torch.device) -> bool:
        """Compute the features of every image of ``source`` now (both flips); True when they
        fit the budget. Afterwards a lookup with indices on the cache's device never waits for
        the device, so the step can be captured as a CUDA graph."""
        cache = self._cache_for(source, torch.device(device)) if self.cache_real else None
        if cache is None:
            return False
        for chunk in range(len(cache.filled)):
            if not cache.filled[chunk]:
                cache._fill(chunk)
                if cache.disabled:
                    return False
        return True

    def _cache_for(self, source: Any, device: torch.device) -> "_RealFeatureCache | None":
        cache = self._cache
        if cache is None or cache.source is not source or cache.device != device:
            cache = _RealFeatureCache(self, source, device, self.cache_mb * 2**20)
            self.__dict__["_cache"] = cache
        return None if cache.disabled else cache

    def forward(self, x_hat: Tensor, x: Tensor, real_features: Sequence[Tensor] | None = None) -> Tensor:
        if x_hat.shape != x.shape:
            raise ValueError(f"identity: shapes differ: {tuple(x_hat.shape)} vs {tuple(x.shape)}")
        real = self.real_features(x) if real_features is None else list(real_features)
        return identity_feature_loss(self._features(x_hat), real, self.layer_weights)

    def g_loss(self, ctx: StepContext) -> Tensor:
        index, source = getattr(ctx, "sample_index", None), getattr(ctx, "sample_source", None)
        if index is None or source is None:
            return self(ctx.x_hat, ctx.x)
        real = self.real_features(ctx.x, key=(index, getattr(ctx, "sample_flip", None)), source=source)
        return self(ctx.x_hat, ctx.x, real_features=real)


class _RealFeatureCache:
    """Backbone features of every (dataset image, flip) of one image source, filled lazily in
    chunks of ``CHUNK`` consecutive dataset indices (both flips at once), so the values never
    depend on which batch first needed an image. Lives on ``device``; never in a state_dict."""

    CHUNK = 64

    def __init__(self, loss: IdentityLoss, source: Any, device: torch.device, budget: int) -> None:
        self.loss, self.source, self.device, self.budget = loss, source, torch.device(device), budget
        self.n = len(source)
        self.filled = torch.zeros((self.n + self.CHUNK - 1) // self.CHUNK, dtype=torch.bool)
        self.store: list[Tensor] | None = None  # per layer (N, 2, C, H, W)
        self.disabled = self.n == 0 or budget <= 0
        self.computed = 0  # images pushed through the backbone (both flips count), for benchmarks

    def lookup(self, index: Tensor, flip: Tensor | None) -> list[Tensor] | None:
        index = torch.as_tensor(index)
        if self.store is not None and index.device == self.device and bool(self.filled.all()):
            rows = index.long()  # filled and on the device: no host round trip (a captured step)
        else:
            rows = self._ensure(index.to("cpu", torch.long))
            if rows is None:
                return None
        col = torch.zeros_like(rows) if flip is None else flip.to(self.device).long().reshape(-1)
        return [s[rows, col] for s in self.store]

    def _ensure(self, index: Tensor) -> Tensor | None:
        """Fill the chunks of ``index`` (CPU); its rows on the cache's device, or None."""
        if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= self.n:
            return None
        for chunk in torch.unique(index // self.CHUNK).tolist():
            if not self.filled[chunk]:
                self._fill(chunk)
                if self.disabled:
                    return None
        return index.to(self.device, non_blocking=True)

    def _fill(self, chunk: int) -> None:
        ids = torch.arange(chunk * self.CHUNK, min((chunk + 1) * self.CHUNK, self.n))
        with torch.no_grad():
            images = self.source(ids).to(self.device)
            plain = [f.detach() for f in self.loss._features(images)]
            mirrored = [f.detach() for f in self.loss._features(images.flip(-1))]
        self.computed += 2 * len(ids)
        if self.store is None:
            per_image = sum(f[0].numel() * f.element_size() for f in plain) * 2
            if per_image * self.n > self.budget:
                self.disabled = True
                return
            self.store = [torch.empty((self.n, 2, *f.shape[1:]), dtype=f.dtype, device=self.device)
                          for f in plain]
        for s, a, b in zip(self.store, plain, mirrored):
            s[ids.to(self.device), 0] = a.to(s.dtype)
            s[ids.to(self.device), 1] = b.to(s.dtype)
        self.filled[chunk] = True
