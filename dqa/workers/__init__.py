"""DQA scorers as workers behind one lazy registry, `WORKERS`: name -> "module:Class" and its components.

A worker module is imported only when its worker is chosen, so scoring `vq`/`mq` never imports the
torch-heavy VBench, ProxyCLIP or checklist modules. Each entry names the components the worker makes
(`WORKERS.info(name)["components"]`), so picking workers for components needs no import either.
The order is the catalogue's: a component made by two workers goes to the first. See base.py for the
interface a worker implements.
"""
from vrthinker.registry import Registry

from dqa.workers.base import Score, ScoreError, Worker

WORKERS = Registry("worker", base=Worker)
WORKERS.register("measures", "dqa.workers.measures:MeasuresWorker", components=("vq", "mq"))
WORKERS.register("vlm", "dqa.workers.vlm:VLMWorker", components=("visionreward", "semantic", "preference"))
WORKERS.register("vbench.dino", "dqa.vbench.consistency:DinoConsistencyWorker", components=("subject_consistency",))
WORKERS.register("vbench.clip", "dqa.vbench.consistency:ClipConsistencyWorker",
                 components=("background_consistency",))
WORKERS.register("vbench.aesthetic", "dqa.vbench.quality:AestheticWorker", components=("aesthetic_quality",))
WORKERS.register("vbench.musiq", "dqa.vbench.quality:MusiqWorker", components=("imaging_quality",))
WORKERS.register("vbench.flicker", "dqa.vbench.flicker:FlickerWorker", components=("temporal_flickering",))
WORKERS.register("vbench.raft", "dqa.vbench.raft:RaftWorker", components=("motion_smoothness", "dynamic_degree"))
WORKERS.register("proxyclip", "dqa.workers.proxyclip:ProxyCLIPWorker", components=("spatial",))


def registry() -> dict[str, type[Worker]]:
    """Every worker class by name, imported now (for listing them all; choosing one is `WORKERS.load`)."""
    return {name: WORKERS.load(name) for name in WORKERS}


__all__ = ["Score", "ScoreError", "Worker", "WORKERS", "registry"]
