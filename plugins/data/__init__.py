"""Built-in dataset components: the embedded synthetic faces and prepared (aligned) folders."""
from __future__ import annotations

from facegan_kit import hookimpl
from facegan_kit.data import NEUTRAL_LABEL, FaceData, FaceSplit


def synthetic(subjects: int = 80, size: int = 128, frames: int = 3, seed: int = 0,
              test_subjects: int = 0, background: str = "random",
              include_neutral: bool = False, neutral_frames: int = 0) -> FaceData:
    """The project's procedural faces (``facegan data synthetic`` writes the same ones to disk).

    Defaults mirror the paper's Oulu-CASIA protocol: 80 subjects x 6 expressions x 3 frames near
    peak intensity, no neutral, split by subject (``test_subjects = 0`` means 10%).
    ``background``: ``"random"`` (a muted colour gradient per image) or ``"plain"`` (one lab grey,
    as Oulu-CASIA's studio recordings). ``include_neutral``: add ``frames`` neutral faces per
    subject (label 6, the first frame of an Oulu-CASIA sequence); the trainer gives them the
    all-negative expression code, the edit-time neutral (docs/paper-fidelity.md, "Neutral and intensity levels").
    ``neutral_frames``: how many neutral faces per subject instead (``0``: ``frames``).
    """
    from facegan_kit.data import SyntheticConfig, make_dataset

    ds = make_dataset(SyntheticConfig(subjects=subjects, size=size, frames=frames, seed=seed,
                                      test_subjects=test_subjects or None, background=background,
                                      include_neutral=include_neutral, neutral_frames=neutral_frames or None))

    def part(mask):
        sub = ds.subset(mask)
        return FaceSplit(sub.images, sub.expression, sub.subject,
                         {"intensity": sub.intensity, "attrs": sub.attrs})

    return FaceData(train=part(ds.train), test=part(~ds.train), num_classes=6, name="synthetic")


def prepared(root: str, size: int = 0, include_neutral: bool = True,
             test_subjects: list[str] | None = None) -> FaceData:
    """Faces written by ``facegan data prepare`` (aligned crops + index.csv), read from the
    cached uint8 store. ``size`` resizes on load when it differs from the prepared size.
    ``include_neutral``: keep the neutral faces the folder holds (``data prepare
    --neutral-first`` / ``--include-neutral``; they train the neutral code) or leave them out.
    ``test_subjects``: hold out these subject names instead of the split ``index.csv`` records,
    so several identity-disjoint splits of one prepared folder can be trained and compared
    (``--set 'data.test_subjects=["01","02"]'``) without preparing it again."""
    import torch

    from facegan_kit import InputError
    from facegan_kit.data import PreparedFaces

    everything = PreparedFaces(root, split="all") if test_subjects is not None else None
    if everything is not None:
        names = everything.subject_names
        unknown = sorted(set(map(str, test_subjects)) - set(names))
        if unknown:
            raise InputError(f"data.test_subjects: {unknown[:5]} not among the {len(names)} subjects of "
                             f"{root} ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
        held = torch.tensor([names.index(str(n)) for n in test_subjects], dtype=torch.long)
        is_test = torch.isin(everything.subject, held)

    def part(split: str) -> FaceSplit:
        if everything is None:
            faces = PreparedFaces(root, split=split)
            images, expression, subject = faces.images, faces.expression, faces.subject
        else:
            keep = is_test if split == "test" else ~is_test
            images, expression, subject = (everything.images[keep], everything.expression[keep],
                                           everything.subject[keep])
        if not include_neutral:
            keep = expression != NEUTRAL_LABEL
            images, expression, subject = images[keep], expression[keep], subject[keep]
        if size and images.shape[-1] != size:
            import torch.nn.functional as F

            images = F.interpolate(images.float(), size=(size, size), mode="bilinear",
                                   antialias=True, align_corners=False).round().clamp(0, 255).byte()
        return FaceSplit(images, expression, subject)

    return FaceData(train=part("train"), test=part("test"), num_classes=6, name=f"prepared:{root}")


@hookimpl
def facegan_register_components(registry):
    registry.add("dataset", "synthetic", synthetic)
    registry.add("dataset", "prepared", prepared)
