"""Loss terms: ``l1``, ``edge-l1``, ``tv``, ``adv-img``, ``adv-z``, ``q``, ``identity``, ``edit`` and ``source-keep``."""
from facegan_kit import hookimpl
from facegan_plugins.losses.edit import EditLoss
from facegan_plugins.losses.identity import IdentityLoss
from facegan_plugins.losses.terms import AdvImgLoss, AdvZLoss, EdgeL1Loss, L1Loss, QLoss, SourceKeepLoss, TVLoss


@hookimpl
def facegan_register_components(registry):
    registry.add("loss", "l1", L1Loss)
    registry.add("loss", "edge-l1", EdgeL1Loss)
    registry.add("loss", "tv", TVLoss)
    registry.add("loss", "adv-img", AdvImgLoss)
    registry.add("loss", "adv-z", AdvZLoss)
    registry.add("loss", "q", QLoss)
    registry.add("loss", "identity", IdentityLoss)
    registry.add("loss", "edit", EditLoss)
    registry.add("loss", "source-keep", SourceKeepLoss)
