"""The typed results of the MCP tools (their JSON schemas are the tools' output schemas).

Field names follow the DQA paper where it names them: the Verifier's `semantic_score` ... `reasoning`, the
A/B data's `USER_SELECTIONS` entry (`test_id`, `variation_a`, `variation_b`, `chosen`, `timestamp`) and the
Tuner's `training_step`, `loss`, `new_patterns`, `model_confidence`.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True)


class Missing(_Doc):
    component: str = Field(description="a component or channel that did not run")
    reason: str = Field(description="a reason word: not_configured, not_scored, failed, ...")
    message: str = Field(description="why, in one line")


class VerifierDoc(_Doc):
    """The paper's Verifier output for one video, plus the grade and the action it implies."""

    video: str
    prompt: str
    semantic_score: Optional[float] = Field(description="does the video show what the prompt asks (0..1); "
                                                        "null when the semantic component could not run")
    spatial_score: Optional[float] = Field(description="are things where the prompt puts them (0..1); null when "
                                                       "not run")
    benchmark_score: Optional[float] = Field(description="VBench dimensions combined (0..1); null when none ran")
    prompt_adherence: Optional[float] = Field(description="the weighted average of the channels present (0..1): "
                                                          "the grade's score")
    reasoning: str = Field(description="what each channel found and how the grade was reached")
    grade: str = Field(description="A, A-, B+, B, B-, C or F ('-' when nothing could be scored)")
    action: str = Field(description="accept, review, refine or reject (none when nothing could be scored)")
    missing: list[Missing] = Field(description="components and channels that could not run, with why")
    channels: dict[str, float] = Field(description="every channel's score in 0..1 (measures, benchmark, ...)")
    components: dict[str, float] = Field(description="each component on its own published scale")


class FrameRef(_Doc):
    video: int = Field(description="1 or 2")
    frame: int = Field(description="the frame's index in that video (0-based), usable with get_frames")


class FrameGroup(_Doc):
    title: str
    frames: list[FrameRef]


class CompareDoc(_Doc):
    """The judge's verdict on two videos: 1 = video1 better, 2 = video2 better, 0 = tie, null = missing."""

    video1: str
    video2: str
    prompt: str
    labels: dict[str, Optional[int]] = Field(description="TA, VQ, MQ, OA -> 1, 2, 0 (tie) or null")
    probabilities: Optional[dict[str, Any]] = Field(
        default=None, description="the judge's label probabilities per dimension, when the backend reports them")
    reasoning: str
    complete: bool = Field(description="true when all four labels are present")
    reason: Optional[str] = Field(description="why labels are missing (null when complete)")
    detail: str
    backend: str
    model_id: str
    frames: list[FrameGroup] = Field(description="the frames the judge looked at, in the order it saw them")


class FrameInfo(_Doc):
    index: int
    time_s: float


class FramesDoc(_Doc):
    video: str
    total_frames: int
    fps: float
    width: int = Field(description="of the images returned")
    height: int = Field(description="of the images returned")
    frames: list[FrameInfo] = Field(description="one per image, in the order of the image content blocks")


class QuestionDoc(_Doc):
    """An A/B question, as the paper's ab_testing block holds it before anyone answered."""

    test_id: int = Field(description="pass it to record_selection")
    prompt: str
    variation_a: str
    variation_b: str
    dimensions: list[str] = Field(description="what the person is asked about: TA, VQ, MQ, OA")
    page: str = Field(description="the question on the A/B page of a `dqa serve` on the same store")
    judge_job: Optional[str] = Field(description="the judge's comparison, queued so it is ready after the answer")


class SelectionDoc(_Doc):
    """A person's answer in the paper's USER_SELECTIONS shape, as stored for `dqa tune`."""

    test_id: int
    variation_a: str
    variation_b: str
    chosen: Literal["variation_a", "variation_b", "tie"]
    rejected: Optional[Literal["variation_a", "variation_b"]] = Field(description="null for a tie")
    timestamp: str = Field(description="ISO 8601, UTC")
    dimension: str
    user: str
    selection: Optional[int] = Field(description="the stored selection's id (null for a tie: no pair to learn)")
    status: str = Field(description="recorded, duplicate, contradiction (both kept, left out of training) or tie")


class TunerDoc(_Doc):
    """The paper's Tuner output after one sleeptime cycle."""

    training_step: int = Field(description="DPO steps trained so far for this judge, all runs together")
    loss: Optional[float] = Field(description="the latest run's validation loss (else its training loss)")
    new_patterns: list[str] = Field(description="failure patterns found since the previous run")
    model_confidence: Optional[float] = Field(description="the judge's agreement with the person on held-out "
                                                          "questions after the latest run (0..1)")
    model_confidence_detail: Optional[dict[str, Any]] = Field(
        default=None, description="what the confidence was measured on (questions, mean probability if known)")
    status: Literal["done", "skipped"] = Field(description="skipped: not enough new selections yet")
    detail: str
    run_id: Optional[int]
    new_selections: int
    adapter: Optional[str] = Field(description="the adapter directory the latest run saved")


class PatternsDoc(_Doc):
    """The paper's quality_standards.FAILURE_PATTERNS."""

    FAILURE_PATTERNS: list[str] = Field(description="one line per pattern the rejected videos share")
    patterns: list[dict[str, Any]] = Field(description="the same patterns with their figures and support")
    detail: str = Field(description="what they were found from, or why there are none")
