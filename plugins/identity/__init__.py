"""Frozen pretrained face-identity backbones, all offline.

- ``dlib-resnet``: PyTorch port of dlib's face-recognition ResNet, weights read from the
  ``face_recognition_models`` package's ``.dat`` file and cached as safetensors;
- ``vggface``: VGG-Face (VGG-16) with the official ExprGAN preprocessing, user weights converted
  with ``facegan weights convert``;
- ``facenet``: facenet-pytorch's InceptionResnetV1 with user weights;
- ``synthetic-id``: a small face-recognition CNN for the embedded synthetic faces, trained by
  the toolkit on synthetic people outside the protocol and cached (the quick recipe's backbone).

Importing this module loads no weights and no optional dependency (dlib, facenet-pytorch).
"""
from __future__ import annotations

from facegan_kit import hookimpl
from facegan_plugins.identity.dlib_resnet import DlibResNet
from facegan_plugins.identity.facenet import FaceNet
from facegan_plugins.identity.synthetic_id import SyntheticId
from facegan_plugins.identity.vggface import VggFace

__all__ = ["DlibResNet", "VggFace", "FaceNet", "SyntheticId"]


@hookimpl
def facegan_register_components(registry):
    registry.add("backbone", "dlib-resnet", DlibResNet)
    registry.add("backbone", "vggface", VggFace)
    registry.add("backbone", "facenet", FaceNet)
    registry.add("backbone", "synthetic-id", SyntheticId)
