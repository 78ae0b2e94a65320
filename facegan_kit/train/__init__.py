"""Training: stages of named phases (forward, D step, G step), checkpoints, logs, samples."""
from facegan_kit.train.loop import TrainResult, train

__all__ = ["TrainResult", "train"]
