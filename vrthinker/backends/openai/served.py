"""The served model as /v1/models reports it, and what each kind of server honours of a request."""
from __future__ import annotations

from dataclasses import dataclass, field

# What each server honours of the greedy settings, and whether it takes pre-extracted frames as a video.
# - vllm: repetition_penalty / top_k / min_p as extra body fields; a video as `data:video/jpeg;base64,` with
#   one comma-separated base64 image per frame (decoded by PIL whatever the label, so PNG stays lossless),
#   never resampled (`do_sample_frames` False for such lists), its fps from the request's media_io_kwargs.
# - sglang: repetition_penalty as an extra body field; videos are decoded and sampled by the server: no.
# - transformers (`transformers serve`): unknown fields are refused (422); `frequency_penalty` f is mapped
#   to repetition_penalty 1 + f, so that is how it is sent; a video is sampled again (32 frames): no.
# - generic: any other server; repetition_penalty is sent as an extra field; no video.
SERVER_KINDS = {
    "vllm": {"extra_settings": True, "penalty_as_frequency": False, "video": True, "tokenize": True},
    "sglang": {"extra_settings": True, "penalty_as_frequency": False, "video": False, "tokenize": False},
    "transformers": {"extra_settings": False, "penalty_as_frequency": True, "video": False, "tokenize": False},
    "generic": {"extra_settings": True, "penalty_as_frequency": False, "video": False, "tokenize": True},
}


@dataclass(frozen=True)
class ServedModel:
    """The model behind the servers, as /v1/models reports it."""

    id: str
    root: str = ""
    owned_by: str = ""
    max_model_len: int | None = None
    extra: dict = field(default_factory=dict)


def server_kind(owned_by: str) -> str:
    o = (owned_by or "").lower()
    if "vllm" in o:
        return "vllm"
    if "sglang" in o:
        return "sglang"
    if o in ("local", "transformers", "huggingface"):
        return "transformers"
    return "generic"
