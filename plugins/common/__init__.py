"""Generic components shared by several models: the conv encoder and the code discriminator."""
from facegan_kit import hookimpl
from facegan_plugins.common.dz import DzMLP
from facegan_plugins.common.encoder import ConvEncoder


@hookimpl
def facegan_register_components(registry):
    registry.add("encoder", "conv-encoder", ConvEncoder)
    registry.add("discriminator", "dz-mlp", DzMLP)
