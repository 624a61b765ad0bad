"""The challenge submission formats: what each organiser asks for, and where that comes from.

One :class:`SubmissionFormat` per format, registered in :data:`FORMATS` (``affectfuse submit --list``); the
checks and the writers are in :mod:`affectfuse.inference.submission`. Each entry records its sources and what
could not be confirmed (written into every submission's ``format.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from affectfuse.errors import AffectfuseError
from affectfuse.tasks.spec import EXPR_CLASSES, GROUP_CLASSES, REACTION_EMOTIONS

__all__ = ["SubmissionFormat", "SubmissionError", "FORMATS", "get_format", "list_formats"]

Layout = Literal["clip_csv", "per_video", "frames_file", "vgaf_txt"]


class SubmissionError(AffectfuseError):
    """The predictions cannot make the asked-for submission: the message lists every problem found."""


@dataclass(frozen=True, kw_only=True)
class SubmissionFormat:
    """One challenge's submission layout.

    Attributes:
        name: registry name (``--format``).
        challenge: the challenge and edition(s) it is for.
        layout: which writer: ``clip_csv`` (one CSV row per clip), ``per_video`` (one text file per video, one line
            per frame), ``frames_file`` (one text file, one line per frame named ``VIDEO/00001.jpg``), ``vgaf_txt``
            (one ``Vid_name Label`` line per clip).
        resolution: the predictions it accepts: ``"clip"`` or ``"frame"``.
        problem: ``"regression"`` (values written) or ``"multiclass"`` (a class written).
        columns: target names (regression) or class names (multiclass) in file order; matched to the run's names
            ignoring case.
        value_range: the range values must be in (regression), or None.
        filename: the file written (``clip_csv``, ``frames_file``, ``vgaf_txt``).
        header: the first line of each file.
        id_brackets: ``clip_csv``: ids written as ``[id]`` (Hume-Reaction ``File_ID``).
        class_base: a class is written as its position in :attr:`columns` plus this.
        sources: where the layout comes from (URLs, files of public code).
        notes: what could not be confirmed, and advice.
    """

    name: str
    challenge: str
    layout: Layout
    resolution: Literal["clip", "frame"]
    problem: Literal["regression", "multiclass"]
    columns: tuple[str, ...]
    value_range: tuple[float, float] | None = None
    filename: str = "predictions.txt"
    header: str = ""
    id_brackets: bool = False
    class_base: int = 0
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def validate(self) -> "SubmissionFormat":
        if self.layout not in ("clip_csv", "per_video", "frames_file", "vgaf_txt"):
            raise ValueError(f"submission format {self.name!r}: unknown layout {self.layout!r}")
        if (self.resolution == "frame") != (self.layout in ("per_video", "frames_file")):
            raise ValueError(f"submission format {self.name!r}: layout {self.layout} does not fit resolution "
                             f"{self.resolution}")
        if not self.columns or not self.header:
            raise ValueError(f"submission format {self.name!r}: needs columns and a header line")
        return self

    @property
    def classification(self) -> bool:
        return self.problem == "multiclass"


_MUSE = ("https://github.com/EIHW/MuSe2022 eval.py write_reaction_predictions (the official baseline's "
         "predictions.csv: File_ID as in labels.csv / partition.csv, then config.REACTION_LABELS)",
         "https://www.muse-challenge.org/muse2022")
_ABAW_OLD = ("https://ibug.doc.ic.ac.uk/resources/cvpr-2022-3rd-abaw/",
             "Aff-Wild2 annotation files (VA_Estimation_Challenge / EXPR_Recognition_Challenge: header line, one line "
             "per frame), the layout entrants' code writes per test video")
_ABAW_NEW = ("https://arxiv.org/abs/2402.19344 (6th ABAW)",
             "organisers' sample files CVPR_5th_ABAW_VA_test_set_sample.txt, "
             "CVPR_6th_ABAW_{VA,Expr}_test_set_sample.txt "
             "(header image_location,...; rows VIDEO/00001.jpg), as read and written by entrants' public code")

FORMATS: dict[str, SubmissionFormat] = {f.name: f.validate() for f in (
    SubmissionFormat(
        name="muse_reaction", challenge="MuSe-Reaction (MuSe 2022, Hume-Reaction)", layout="clip_csv",
        resolution="clip", problem="regression", columns=REACTION_EMOTIONS, value_range=(0.0, 1.0),
        filename="predictions.csv", header="File_ID," + ",".join(REACTION_EMOTIONS), id_brackets=True, sources=_MUSE,
        notes=("the organisers' upload page was not found; the layout is the official baseline's prediction file",
               "File_ID is written bracketed ([00012]) as in the challenge's labels.csv / partition.csv")),
    SubmissionFormat(
        name="abaw_eri", challenge="ABAW5 Emotional Reaction Intensity (CVPR 2023, Hume-Reaction)", layout="clip_csv",
        resolution="clip", problem="regression", columns=REACTION_EMOTIONS, value_range=(0.0, 1.0),
        filename="predictions.csv", header="File_ID," + ",".join(REACTION_EMOTIONS), id_brackets=True,
        sources=_MUSE + ("https://ibug.doc.ic.ac.uk/resources/cvpr-2023-5th-abaw/",),
        notes=("UNCONFIRMED: no ABAW5 ERI submission guideline was found; this is the MuSe-Reaction baseline layout "
               "(same data, same seven columns). Check the File_ID form (bracketed here) and the file name against "
               "the organisers' instructions",)),
    SubmissionFormat(
        name="abaw_va", challenge="ABAW valence-arousal, 1st-4th editions (Aff-Wild2)", layout="per_video",
        resolution="frame", problem="regression", columns=("valence", "arousal"), value_range=(-1.0, 1.0),
        header="valence,arousal", sources=_ABAW_OLD,
        notes=("one file per test video, one line per frame of the video from frame 1, frames without a face "
               "included",)),
    SubmissionFormat(
        name="abaw_expr", challenge="ABAW expression, 1st-4th editions (Aff-Wild2)", layout="per_video",
        resolution="frame", problem="multiclass", columns=EXPR_CLASSES, header=",".join(EXPR_CLASSES),
        sources=_ABAW_OLD,
        notes=("one integer class per line (0 = Neutral ... 7 = Other), one line per frame from frame 1",)),
    SubmissionFormat(
        name="abaw5_va", challenge="ABAW valence-arousal, 5th edition on (CVPR 2023-)", layout="frames_file",
        resolution="frame", problem="regression", columns=("valence", "arousal"), value_range=(-1.0, 1.0),
        header="image_location,valence,arousal", sources=_ABAW_NEW,
        notes=("pass the organisers' test-set sample file as frame_counts (--frames): it names the frames, their "
               "order and image names; without it every frame 1..N of each video is written as VIDEO/%05d.jpg",
               "the guideline page itself was not available here; the layout is the sample file's")),
    SubmissionFormat(
        name="abaw5_expr", challenge="ABAW expression, 5th edition on (CVPR 2023-)", layout="frames_file",
        resolution="frame", problem="multiclass", columns=EXPR_CLASSES,
        header="image_location," + ",".join(EXPR_CLASSES), sources=_ABAW_NEW,
        notes=("one integer class per frame after the image name (VIDEO/00001.jpg,3)",
               "pass the organisers' sample file as --frames (see abaw5_va)")),
    SubmissionFormat(
        name="emotiw_vgaf", challenge="EmotiW audio-video group emotion (VGAF)", layout="vgaf_txt",
        resolution="clip", problem="multiclass", columns=GROUP_CLASSES, header="Vid_name Label", class_base=1,
        sources=("VGAF Train_labels.txt / Val_labels.txt (Vid_name Label, 1/2/3 = Positive/Neutral/Negative), as "
                 "read by https://github.com/augusmaa/Emotiw2023 data/datasets.py",),
        notes=("UNCONFIRMED: the EmotiW test submission instructions were not found; the file mirrors the "
               "distributed label files (space separated, a header line, one clip per line)",)),
)}


def get_format(name: "str | SubmissionFormat") -> SubmissionFormat:
    """A registered format by name (or the given one, validated)."""
    if isinstance(name, SubmissionFormat):
        return name.validate()
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown submission format {name!r}; formats: {', '.join(FORMATS)}") from None


def list_formats() -> list[SubmissionFormat]:
    return list(FORMATS.values())
