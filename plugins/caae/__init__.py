"""CAAE components (Zhang, Song, Qi, CVPR 2017): the label controller, decoder and D_img.

The encoder and D_z are the shared ``conv-encoder`` and ``dz-mlp`` of the ``common`` plugin.
"""
from facegan_kit import hookimpl
from facegan_plugins.caae.controller import OneHotPM1
from facegan_plugins.caae.discriminator import CAAEDImg
from facegan_plugins.caae.generator import CAAEDecoder


@hookimpl
def facegan_register_components(registry):
    registry.add("controller", "onehot-pm1", OneHotPM1)
    registry.add("decoder", "caae-decoder", CAAEDecoder)
    registry.add("discriminator", "caae-dimg", CAAEDImg)
