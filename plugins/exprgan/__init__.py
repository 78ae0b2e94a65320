"""ExprGAN components: the expression controller, decoder, image discriminator and Q."""
from facegan_kit import hookimpl
from facegan_plugins.exprgan.controller import FCtrl
from facegan_plugins.exprgan.decoder import ExprDecoder
from facegan_plugins.exprgan.discriminator import ExprDImg, ExprQ


@hookimpl
def facegan_register_components(registry):
    registry.add("controller", "exprgan-fctrl", FCtrl, aliases=("fctrl",))
    registry.add("decoder", "exprgan-decoder", ExprDecoder)
    registry.add("discriminator", "exprgan-dimg", ExprDImg)
    registry.add("regularizer", "exprgan-q", ExprQ)
