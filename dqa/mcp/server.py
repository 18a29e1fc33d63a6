"""The MCP server: dqa.mcp.service's operations as typed tools and dqa:// resources on the official `mcp` SDK.

Each tool's one-line description is what an agent's model reads to pick it; its input and output JSON schemas
come from the type hints (dqa.mcp.documents). A refused or failed call is a tool error (`isError`) whose text
is one line, never a traceback. Long calls run on a worker thread and report MCP progress notifications.
"""
from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Literal, Optional

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import Field, ValidationError

from dqa.mcp.documents import CompareDoc, FramesDoc, PatternsDoc, QuestionDoc, SelectionDoc, TunerDoc, VerifierDoc
from dqa.mcp.service import Service, ToolFailure

INSTRUCTIONS = (
    "DQA: the Verifier and the Tuner of a video pipeline. verify_video grades one generated video against its "
    "prompt (accept / review / refine / reject); compare_videos asks the pairwise judge which of two is better; "
    "get_frames shows you frames; ask_preference and record_selection collect a person's A/B choice; run_tuner "
    "learns from those choices; failure_patterns says what rejected videos have in common. Video paths are "
    "relative to the server's media root (or absolute inside it).")

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

VideoPath = Annotated[str, Field(description="a video file inside the media root (relative to it, or absolute)")]
PromptText = Annotated[str, Field(description="the text prompt the video was generated from")]
Dimension = Annotated[Optional[str], Field(description="TA (text alignment), VQ (visual quality), MQ (motion "
                                                       "quality) or OA (overall); default: the question's")]


def one_line(e: ValidationError) -> str:
    """A pydantic argument error as one line: 'count: Input should be a valid integer; video: Field required'."""
    parts = []
    for err in e.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        parts.append(f"{where}: {' '.join(str(err.get('msg', 'invalid')).split())}")
    return "invalid arguments: " + "; ".join(parts[:4]) + (f" (and {len(parts) - 4} more)" if len(parts) > 4 else "")


class DQAServer(MCPServer):
    """MCPServer whose argument-validation errors read as one line, like every other tool error here."""

    async def call_tool(self, name, arguments, context=None):
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            if isinstance(e.__cause__, ValidationError):
                raise ToolError(f"Error executing tool {name}: {one_line(e.__cause__)}") from e.__cause__
            raise


async def _in_thread(ctx: Context | None, fn, *args, **kw):
    """Run a blocking service call on a worker thread; its progress(done, total, message) becomes MCP
    progress notifications; ToolFailure becomes a tool error."""

    def progress(done: float, total: float, message: str) -> None:
        if ctx is not None:
            anyio.from_thread.run(functools.partial(ctx.report_progress, done, total or None, message))

    try:
        # a cancelled call returns at once; its job still finishes in the queue, for the next identical call
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, progress=progress, **kw),
                                              abandon_on_cancel=True)
    except ToolFailure as e:
        raise ToolError(str(e)) from None


async def _plain(fn, *args, **kw):
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kw))
    except ToolFailure as e:
        raise ToolError(str(e)) from None


def caller(auth, ctx: Context | None, given: Optional[str]) -> Optional[str]:
    """Who an answer is recorded as, by dqa serve's rule: with authentication (HTTP with a token or --users),
    whoever the verified Bearer token says (a different `user` is refused); otherwise the argument."""
    if auth is None or not auth.required:
        return given
    headers = (ctx.headers if ctx is not None else None) or {}
    user = auth.bearer_user(next((v for k, v in headers.items() if k.lower() == "authorization"), None))
    if user is None:
        raise ToolError("send Authorization: Bearer TOKEN")
    if given not in (None, "", user):
        raise ToolError(f"you are signed in as {user}; leave user out or give {user}")
    return user


def build(service: Service, name: str = "dqa", auth=None) -> MCPServer:
    """The MCP server for one Service (the caller starts and stops the service's job worker). `auth`: the HTTP
    transport's dqa.serve.auth.Auth, which names the user a selection is recorded as."""
    mcp = DQAServer(name, instructions=INSTRUCTIONS, version="1", log_level="WARNING")

    @mcp.tool(annotations=READ_ONLY)
    async def verify_video(video: VideoPath, prompt: PromptText,
                           components: Annotated[Optional[list[str]], Field(
                               description="what to score: offline (default with the weight-free judge: vq, mq, "
                                           "temporal_flickering), vbench, measures, semantic, spatial, "
                                           "visionreward, preference, all, or component names")] = None,
                           ctx: Context = None) -> VerifierDoc:
        """Grade one generated video against its prompt: semantic, spatial and benchmark scores, the grade (A..F) and the action (accept, review, refine, reject)."""  # noqa: E501
        return await _in_thread(ctx, service.verify_video, video, prompt, components)

    @mcp.tool(annotations=READ_ONLY)
    async def compare_videos(video1: VideoPath, video2: VideoPath, prompt: PromptText,
                             orders: Annotated[Literal["one", "both"], Field(
                                 description="both: judge (1, 2) and (2, 1) and reconcile, against position "
                                             "bias")] = "one",
                             ctx: Context = None) -> CompareDoc:
        """Ask the pairwise judge which of two videos of one prompt is better on TA, VQ, MQ and OA (1 = video1, 2 = video2, 0 = tie), with its reasoning and the frames it looked at."""  # noqa: E501
        return await _in_thread(ctx, service.compare_videos, video1, video2, prompt, orders)

    @mcp.tool(annotations=READ_ONLY)
    async def get_frames(video: VideoPath,
                         count: Annotated[Optional[int], Field(description="this many evenly spaced frames, "
                                                                           "first and last included (default 8)")]
                         = None,
                         indices: Annotated[Optional[list[int]], Field(description="these frame indices "
                                                                                   "(0-based) instead")] = None,
                         max_side: Annotated[int, Field(description="longest image side in pixels")] = 512,
                         ) -> Annotated[CallToolResult, FramesDoc]:
        """Return frames of a video as images (JPEG), evenly spaced or by index, so you can look at them yourself."""  # noqa: E501
        doc, images = await _plain(service.get_frames, video, count=count, indices=indices, max_side=max_side)
        import base64

        text = (f"{len(images)} frame(s) of {doc.video} ({doc.total_frames} frames at {doc.fps:g} fps): "
                + ", ".join(f"#{f.index} at {f.time_s:g} s" for f in doc.frames))
        content: list[Any] = [TextContent(type="text", text=text)]
        content += [ImageContent(type="image", data=base64.b64encode(b).decode("ascii"), mime_type="image/jpeg")
                    for b in images]
        return CallToolResult(content=content, structured_content=doc.model_dump(mode="json"))

    @mcp.tool(annotations=WRITES)
    async def ask_preference(prompt: PromptText, a: VideoPath, b: VideoPath, dimension: Dimension = None
                             ) -> QuestionDoc:
        """Create an A/B question for a person (which of a and b is better); answer it with record_selection or on the A/B page."""  # noqa: E501
        return await _plain(service.ask_preference, prompt, a, b, dimension)

    @mcp.tool(annotations=WRITES)
    async def record_selection(test_id: Annotated[int, Field(description="the question's id from ask_preference")],
                               chosen: Annotated[Literal["variation_a", "variation_b", "a", "b", "tie"], Field(
                                   description="the variation the person preferred, or tie")],
                               dimension: Dimension = None,
                               user: Annotated[Optional[str], Field(description="who chose (over HTTP with a "
                                                                                "token: the token's user)")] = None,
                               ctx: Context = None) -> SelectionDoc:
        """Record a person's choice on an A/B question; it becomes a selection the tuner learns from."""
        return await _plain(service.record_selection, test_id, chosen, dimension, caller(auth, ctx, user))

    @mcp.tool(annotations=WRITES)
    async def run_tuner(min_new: Annotated[int, Field(description="train only when at least this many new "
                                                                  "selections arrived since the last run")] = 1,
                        ctx: Context = None) -> TunerDoc:
        """The sleeptime step: if enough new A/B selections exist, fine-tune the judge on them (DPO), and report the training step, loss, new failure patterns and model confidence."""  # noqa: E501
        return await _in_thread(ctx, service.run_tuner, min_new)

    @mcp.tool(annotations=READ_ONLY)
    async def failure_patterns(ctx: Context = None) -> PatternsDoc:
        """What the videos people rejected have in common (the quality standards' FAILURE_PATTERNS)."""
        return await _in_thread(ctx, service.failure_patterns)

    # ------------------------------------------------------------------------------------------------------
    # resources

    def _json(x: Any) -> str:
        return json.dumps(x, ensure_ascii=False, indent=1, default=str)

    @mcp.resource("dqa://grades/recent", name="recent grades", mime_type="application/json",
                  description="the latest Verifier grades on this store, newest first")
    def grades() -> str:
        return _json(service.recent_grades())

    @mcp.resource("dqa://patterns", name="failure patterns", mime_type="application/json",
                  description="the current FAILURE_PATTERNS")
    def patterns() -> str:
        try:
            return _json(service.failure_patterns().model_dump(mode="json"))
        except ToolFailure as e:
            return _json({"FAILURE_PATTERNS": [], "patterns": [], "detail": str(e)})

    @mcp.resource("dqa://tuner/history", name="tuner history", mime_type="application/json",
                  description="every tuner run: steps, losses, agreement before and after")
    def history() -> str:
        return _json(service.tuner_history())

    @mcp.resource("dqa://selections/recent", name="user selections", mime_type="application/json",
                  description="the latest A/B choices in the USER_SELECTIONS shape, newest first")
    def selections() -> str:
        return _json(service.recent_selections())

    return mcp
