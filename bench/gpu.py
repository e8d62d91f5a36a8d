"""The worker's own cost per image next to a bare diffusers loop, on a GPU (or the CPU).

    python3 bench/gpu.py --shape sd15                  # SD-1.5-shaped, 512², 20 steps
    python3 bench/gpu.py --shape sdxl                  # SDXL-shaped, 1024², 20 steps
    python3 bench/gpu.py --shape sd15 --variants compile,channels_last,fuse_qkv
    .venv/bin/python bench/gpu.py --shape tiny --device cpu   # the CPU form (make bench)

It builds a randomly initialised pipeline of the chosen shape itself and saves it to a
models folder (nothing is downloaded), then alternates, round after round:

- ``bare``: the pipeline called in a plain loop, each image encoded as WebP, the
  result format the studio asks for;
- ``engine``: the project's ``DiffusersEngine`` alone on an asyncio loop;
- ``worker-v1`` / ``worker-v2``: the whole worker (the local studio in its own process,
  claim or offer, engine, encode, upload, logs, status) over each protocol, started once
  and fed a batch of jobs each round (v1 uploads a result while the next job runs; v2
  may not: the studio offers a job only to an idle worker);
- ``engine+OPT``: the engine with an opt-in speed-up (``--variants``).

It prints one JSON line per phase (medians over the rounds, GPU utilisation sampled
through NVML when present), one for the pipeline load and the worker's first result
after start, and a summary line with the ratios and the goals (issue 16).

Each phase holds its own copy of the pipeline (the bare loop, the engine, each variant,
each protocol's worker): SDXL in float16 takes ~7 GiB a copy; on a smaller card measure
fewer at a time (``--protocols v1``, fewer ``--variants``).

On a GPU machine with torch and transformers but without diffusers, pydantic, tomlkit
or platformdirs, bring those as wheels: ``bench/gpu-wheels.sh`` here, then there
``python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl`` and
``PYTHONPATH=/tmp/site python3 bench/gpu.py ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = "bench-pipeline"
PROMPT = "a stone golem in a mossy forest"
GOAL_RATIO = 0.97
FIRST_RESULT_SLACK_S = 2.0
SETTLE_S = 2.5
"""After each worker batch, before the next phase is timed (the worker's trailing work)."""
# Every phase makes one image untimed before its clock starts, every round: whichever
# phase came first after the others measured ~5-20 % slower on the CPU (the order, not
# the phase: swapping bare and engine swapped the gap), so every phase starts warm.

# name: (pipeline class, default size, default steps, builder arguments)
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"xl": False, "size": 32, "steps": 10},
    "tiny-xl": {"xl": True, "size": 32, "steps": 10},
    "sd15": {"xl": False, "size": 512, "steps": 20},
    "sdxl": {"xl": True, "size": 1024, "steps": 20},
}
VARIANTS = ("compile", "channels_last", "fuse_qkv")


def _emit(record: dict[str, Any], out: Any | None) -> None:
    line = json.dumps(record, sort_keys=False)
    print(line, flush=True)
    if out is not None:
        out.write(line + "\n")
        out.flush()


# -- the random-weight pipelines -----------------------------------------------------------


def _tokenizer(transformers: Any, folder: Path) -> Any:
    """A byte-pair tokenizer over single letters: enough for any lowercase prompt."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(letter, len(vocab))
        vocab.setdefault(letter + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                      model_max_length=77)


def _clip_config(transformers: Any, *, hidden: int, layers: int, heads: int, inner: int,
                 projection: int, act: str) -> Any:
    return transformers.CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=hidden,
        intermediate_size=inner, num_attention_heads=heads, num_hidden_layers=layers,
        vocab_size=49408 if hidden >= 768 else 64, max_position_embeddings=77,
        projection_dim=projection, hidden_act=act,
    )


def build_pipeline(shape: str, folder: Path, device: str) -> None:
    """Save a randomly initialised pipeline of ``shape`` (real layer sizes) to ``folder``."""
    import diffusers
    import torch
    import transformers

    torch.manual_seed(0)
    tiny = shape.startswith("tiny")
    xl = SHAPES[shape]["xl"]
    build_device = device if device.startswith("cuda") else "cpu"
    with torch.device(build_device):
        if tiny:
            vae = diffusers.AutoencoderKL(
                block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, sample_size=32,
            )
        else:
            vae = diffusers.AutoencoderKL(
                block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3,
                latent_channels=4, layers_per_block=2,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                sample_size=1024 if xl else 512,
            )
        if not xl:
            if tiny:
                unet = diffusers.UNet2DConditionModel(
                    block_out_channels=(8, 16), layers_per_block=1, sample_size=16,
                    in_channels=4, out_channels=4,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                    norm_num_groups=8, attention_head_dim=4,
                )
                text = _clip_config(transformers, hidden=16, layers=2, heads=2, inner=32,
                                    projection=16, act="quick_gelu")
            else:  # Stable Diffusion 1.5: the UNet's defaults are its layout
                unet = diffusers.UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
                text = _clip_config(transformers, hidden=768, layers=12, heads=12, inner=3072,
                                    projection=768, act="quick_gelu")
            pipe = diffusers.StableDiffusionPipeline(
                unet=unet, vae=vae, text_encoder=transformers.CLIPTextModel(text),
                tokenizer=_tokenizer(transformers, folder.parent / "vocab"),
                scheduler=diffusers.EulerDiscreteScheduler(steps_offset=1),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            )
        else:
            if tiny:  # diffusers' own tiny SDXL test layout
                text = _clip_config(transformers, hidden=32, layers=2, heads=4, inner=37,
                                    projection=32, act="gelu")
                text_2 = text
                unet = diffusers.UNet2DConditionModel(
                    block_out_channels=(32, 64), layers_per_block=2, sample_size=16,
                    in_channels=4, out_channels=4,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                    attention_head_dim=(2, 4), use_linear_projection=True,
                    addition_embed_type="text_time", addition_time_embed_dim=8,
                    transformer_layers_per_block=(1, 2),
                    projection_class_embeddings_input_dim=80, cross_attention_dim=64,
                    norm_num_groups=1,
                )
            else:  # Stable Diffusion XL base
                text = _clip_config(transformers, hidden=768, layers=12, heads=12, inner=3072,
                                    projection=768, act="quick_gelu")
                text_2 = _clip_config(transformers, hidden=1280, layers=32, heads=20,
                                      inner=5120, projection=1280, act="gelu")
                unet = diffusers.UNet2DConditionModel(
                    sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                      "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                    cross_attention_dim=2048, use_linear_projection=True,
                    addition_embed_type="text_time", addition_time_embed_dim=256,
                    projection_class_embeddings_input_dim=2816,
                )
            tokenizer = _tokenizer(transformers, folder.parent / "vocab")
            pipe = diffusers.StableDiffusionXLPipeline(
                vae=vae, text_encoder=transformers.CLIPTextModel(text),
                text_encoder_2=transformers.CLIPTextModelWithProjection(text_2),
                tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
                scheduler=diffusers.EulerDiscreteScheduler(steps_offset=1),
            )
    if build_device != "cpu":
        pipe = pipe.to(torch.float16)
    pipe.save_pretrained(str(folder))
    del pipe
    if build_device != "cpu":
        torch.cuda.empty_cache()


# -- measuring -----------------------------------------------------------------------------


class GpuSampler:
    """Mean GPU utilisation (NVML) while a phase runs; None without NVML or a GPU."""

    def __init__(self) -> None:
        self.name: str | None = None
        self._nvml: Any = None
        self._handle: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            name = pynvml.nvmlDeviceGetName(self._handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
            self._nvml = pynvml
        except Exception:
            self._nvml = None

    @contextmanager
    def sampling(self, into: list[float]) -> Iterator[None]:
        if self._nvml is None:
            yield
            return
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(0.05):
                try:
                    into.append(float(self._nvml.nvmlDeviceGetUtilizationRates(
                        self._handle).gpu))
                except Exception:
                    return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _sync(device: str) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and device.startswith("cuda"):
        torch.cuda.synchronize()


class Bench:
    def __init__(self, args: argparse.Namespace, models: Path, out: Any | None) -> None:
        self.args = args
        self.models = models
        self.out = out
        self.size = args.size or SHAPES[args.shape]["size"]
        self.steps = args.steps or SHAPES[args.shape]["steps"]
        self.sampler = GpuSampler()
        self.base: dict[str, Any] = {
            "bench": "gpu", "shape": args.shape, "device": args.device,
            "card": self.sampler.name, "size": self.size, "steps": self.steps,
            "images_per_round": args.jobs, "rounds": args.rounds,
        }
        self.times: dict[str, list[float]] = {}
        self.util: dict[str, list[float]] = {}
        self.cold: dict[str, list[float]] = {"load_s": [], "first_image_s": [],
                                             "first_result_s": []}
        """Per cold start (fresh processes, bare then worker, alternating)."""
        self.load_s = 0.0

    def settings(self, **options: bool) -> Any:
        from workerlib.engines.settings import DiffusersSettings

        return DiffusersSettings(device=self.args.device, dtype=self.args.dtype,
                                 guidance_scale=7.5, **options)

    def task(self, seed: int) -> Any:
        from workerlib.wire import ImageTask

        return ImageTask(prompt=PROMPT, width=self.size, height=self.size, steps=self.steps,
                         seed=seed, ext="webp")

    def record(self, phase: str, seconds_per_image: float, util: list[float]) -> None:
        self.times.setdefault(phase, []).append(seconds_per_image)
        self.util.setdefault(phase, []).extend(util)

    # bare ------------------------------------------------------------------------------
    def load_bare(self) -> Any:
        """The pipeline as a user's own script would load it."""
        import diffusers
        import torch

        from workerlib.engines.diffusers import DiffusersEngine

        engine = DiffusersEngine(self.models, settings=self.settings())
        device = engine._device(torch)
        dtype = engine._dtype(torch, device)
        pipe = diffusers.DiffusionPipeline.from_pretrained(
            str(self.models / MODEL), local_files_only=True, torch_dtype=dtype).to(device)
        pipe.set_progress_bar_config(disable=True)
        self.device = device
        return pipe

    def bare_round(self, pipe: Any, seed: int) -> None:
        import torch

        def image(i: int) -> None:
            picture = pipe(
                prompt=PROMPT, width=self.size, height=self.size,
                num_inference_steps=self.steps, guidance_scale=7.5,
                generator=torch.Generator(device="cpu").manual_seed(seed + i),
                output_type="pil",
            ).images[0]
            buf = io.BytesIO()
            picture.save(buf, format="WEBP")

        image(-1)  # untimed: every phase starts its clock warm (see SETTLE_S)
        util: list[float] = []
        with self.sampler.sampling(util):
            started = time.perf_counter()
            for i in range(self.args.jobs):
                image(i)
            elapsed = time.perf_counter() - started
        self.record("bare", elapsed / self.args.jobs, util)

    # engine alone ----------------------------------------------------------------------
    async def engine_round(self, phase: str, engine: Any, seed: int) -> None:
        from workerlib.engines.base import resolve

        loop = asyncio.get_running_loop()
        seen: list[float] = []

        def progress(fraction: float) -> None:  # what the worker does: hop to the loop
            loop.call_soon_threadsafe(seen.append, fraction)

        resolve(await engine.generate(MODEL, self.task(seed - 1), progress))  # untimed
        util: list[float] = []
        with self.sampler.sampling(util):
            started = time.perf_counter()
            for i in range(self.args.jobs):
                # Encoded here, in line, as the bare loop does (the worker overlaps it).
                resolve(await engine.generate(MODEL, self.task(seed + i), progress))
            elapsed = time.perf_counter() - started
        self.record(phase, elapsed / self.args.jobs, util)

    # the whole worker ------------------------------------------------------------------
    def job(self) -> dict[str, Any]:
        return {"kind": "image", "prompt": PROMPT, "width": self.size, "height": self.size,
                "steps": self.steps, "ext": "webp"}

    def write_config(self, path: Path, url: str, protocol: str = "auto") -> None:
        from bench.common import TOKEN
        from workerlib.config import ConfigStore

        ConfigStore(path).update({
            "api_base_url": url, "bootstrap_token": TOKEN, "auto_update_enabled": False,
            "protocol": protocol,
            "engine": "diffusers", "models_root": str(self.models),
            "claim_interval_secs": 0.5, "job_timeout_secs": 3600, "vram_threshold_gb": 4096,
            "diffusers": {"device": self.args.device, "dtype": self.args.dtype,
                          "guidance_scale": 7.5},
        })

    def cold_starts(self, url: str) -> None:
        """Fresh processes, as a person starts them, bare and worker in turn
        (``--cold-starts`` pairs): a bare script's start to its pipeline loaded and to its
        first image, and the worker's start to its first result."""
        for _ in range(self.args.cold_starts):
            self.bare_start()
            self.worker_start(url)

    def bare_start(self) -> None:
        cold = [sys.executable, str(Path(__file__).resolve()), "--cold-bare", "--shape",
                self.args.shape, "--device", self.args.device, "--dtype", self.args.dtype,
                "--size", str(self.size), "--steps", str(self.steps), "--models",
                str(self.models.parent)]
        done = subprocess.run([*cold, "--spawned-at", repr(time.time())], cwd=ROOT,
                              capture_output=True, text=True, check=True)
        bare = json.loads(done.stdout.strip().splitlines()[-1])
        self.cold["load_s"].append(bare["load_s"])
        self.cold["first_image_s"].append(bare["first_image_s"])

    def worker_start(self, url: str) -> None:
        from bench.common import admin

        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.toml"
            self.write_config(config, url)
            before = _completed(admin(url, "/admin/stats"))
            admin(url, "/admin/jobs", {"model": MODEL, "count": 1, "task": self.job()})
            started = time.time()
            worker = subprocess.Popen([sys.executable, "-m", "workerlib", "--config",
                                       str(config), "run"], cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = started + 1800
                while _completed(admin(url, "/admin/stats")) <= before:
                    if worker.poll() is not None or time.time() > deadline:
                        raise SystemExit("the worker ended or took too long on its first job")
                    time.sleep(0.02)
                self.cold["first_result_s"].append(time.time() - started)
            finally:
                worker.terminate()
                worker.wait(timeout=60)

    async def worker_rounds(self, urls: dict[str, str],
                            rounds: list[Callable[[], Any]]) -> None:
        """Start one worker per protocol (each with a studio of its own), then one batch
        per worker and round; ``rounds[i]`` runs the other phases
        of round i first, while the workers idle."""
        from bench.common import admin
        from workerlib.paths import Paths
        from workerlib.runtime.state import Event
        from workerlib.service import WorkerService

        job = self.job()
        with tempfile.TemporaryDirectory() as tmp:
            services: dict[str, WorkerService] = {}
            finished: dict[str, int] = {}
            changed = asyncio.Event()

            def counter(protocol: str) -> Callable[[Event], None]:
                def on_event(event: Event) -> None:
                    if event.kind == "finished":
                        finished[protocol] += 1
                        changed.set()
                return on_event

            async def until(protocol: str, count: int) -> None:
                while finished[protocol] < count:
                    changed.clear()
                    await asyncio.wait_for(changed.wait(), 3600)

            try:
                for protocol, url in urls.items():
                    root = Path(tmp) / protocol
                    paths = Paths(root / "config.toml", root / "logs", root / "state",
                                  root / "cache")
                    self.write_config(paths.config_file, url, protocol)
                    service = services[protocol] = WorkerService(paths)
                    finished[protocol] = 0
                    service.subscribe(counter(protocol))
                    await service.open()
                    await service.register()
                    await service.start()
                for index, others in enumerate(rounds):
                    await others()
                    for protocol, service in services.items():
                        assert service.loops is not None
                        await asyncio.to_thread(admin, urls[protocol], "/admin/jobs", {
                            "model": MODEL, "count": 1, "task": job})  # untimed
                        service.loops.wake.set()
                        await until(protocol, (index + 1) * (self.args.jobs + 1) - self.args.jobs)
                        util: list[float] = []
                        with self.sampler.sampling(util):
                            began = time.perf_counter()
                            await asyncio.to_thread(admin, urls[protocol], "/admin/jobs", {
                                "model": MODEL, "count": self.args.jobs, "task": job})
                            service.loops.wake.set()
                            await until(protocol, (index + 1) * (self.args.jobs + 1))
                            elapsed = time.perf_counter() - began
                        self.record(f"worker-{protocol}", elapsed / self.args.jobs, util)
                        # What a worker does after a batch (logs shipped each second, stats
                        # rows written within one) must not land on the next phase's clock.
                        await asyncio.sleep(SETTLE_S)
            finally:
                for service in services.values():
                    await service.close()
            for protocol, service in services.items():
                if service.state.jobs_failed:
                    raise SystemExit(f"the {protocol} worker failed {service.state.jobs_failed} "
                                     f"job(s): {service.state.recent_jobs()[0].reason}")

    # the run ---------------------------------------------------------------------------
    async def run(self) -> None:
        from bench.common import studio_process
        from workerlib.engines.diffusers import DiffusersEngine

        with studio_process() as url:
            self.cold_starts(url)
        pipe = self.load_bare()
        # The bare loop runs on a thread of its own for the whole run, as each engine's
        # pipeline does: the same placement for every phase (a pipeline called from
        # several threads in turn, or from the thread that also runs the event loop,
        # measured noisier and slower here, and that is not the worker's cost).
        bare_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                            thread_name_prefix="bare")
        loop = asyncio.get_running_loop()

        async def bare_round(seed: int) -> None:
            await loop.run_in_executor(bare_thread, self.bare_round, pipe, seed)

        await bare_round(0)  # the bare loop's own first call, untimed below
        self.times.clear()
        self.util.clear()
        engines: dict[str, Any] = {"engine": DiffusersEngine(self.models,
                                                             settings=self.settings())}
        for variant in self.args.variants:
            engines[f"engine+{variant}"] = DiffusersEngine(
                self.models, settings=self.settings(**{variant: True}))
        for engine in engines.values():
            await engine.start()
            await engine.generate(MODEL, self.task(0), lambda _f: None)  # load and warm

        def round_of(index: int) -> Callable[[], Any]:
            async def others() -> None:
                seed = 1000 * (index + 1)
                await bare_round(seed)
                for phase, engine in engines.items():
                    await self.engine_round(phase, engine, seed)
            return others

        with contextlib.ExitStack() as studios:
            # The v2 worker registers with the bootstrap token (v1's register route).
            urls = {protocol: studios.enter_context(
                        studio_process("v1" if protocol == "v1" else "both"))
                    for protocol in self.args.protocols}
            await self.worker_rounds(urls, [round_of(i) for i in range(self.args.rounds)])
        for engine in engines.values():
            await engine.close()
        bare_thread.shutdown()
        self.report()

    def report(self) -> None:
        bare = statistics.median(self.times["bare"])
        cold = {k: statistics.median(v) for k, v in self.cold.items()}
        self.load_s = cold["load_s"]
        first = cold["first_result_s"]
        _emit({**self.base, "phase": "first_result", "cold_starts": self.args.cold_starts,
               "bare_start_to_pipeline_loaded_s": round(self.load_s, 3),
               "bare_start_to_first_image_s": round(cold["first_image_s"], 3),
               "worker_start_to_first_result_s": round(first, 3),
               "per_start": {k: [round(x, 3) for x in v] for k, v in self.cold.items()},
               "goal": f"worker's first result <= bare load + {FIRST_RESULT_SLACK_S:g} s "
                       "(medians)",
               "met": first <= self.load_s + FIRST_RESULT_SLACK_S}, self.out)
        ratios: dict[str, float] = {}
        for phase, values in self.times.items():
            median = statistics.median(values)
            ratios[phase] = bare / median
            util = self.util.get(phase) or []
            _emit({**self.base, "phase": phase, "median_s_per_image": round(median, 4),
                   "s_per_image_per_round": [round(v, 4) for v in values],
                   "images_per_s": round(1 / median, 3),
                   "throughput_vs_bare": round(bare / median, 3),
                   "gpu_util_pct": round(statistics.mean(util), 1) if util else None},
                  self.out)
        workers = [v for k, v in ratios.items() if k.startswith("worker-")]
        _emit({**self.base, "phase": "summary", "pipeline_load_s": round(self.load_s, 3),
               "throughput_vs_bare": {k: round(v, 3) for k, v in ratios.items()},
               "goal": f"worker >= {GOAL_RATIO} x bare loop with WebP encode (each protocol)",
               "met": bool(workers) and min(workers) >= GOAL_RATIO}, self.out)


def _completed(stats: object) -> int:
    assert isinstance(stats, dict)
    return int(stats["jobs"].get("completed", 0))


def cold_bare(args: argparse.Namespace, spawned_at: float) -> None:
    """In a fresh process: import, load, make one image and encode it, as a bare script."""
    import diffusers
    import torch

    device = args.device
    dtype = getattr(torch, args.dtype if args.dtype != "auto" else
                    ("float16" if device.startswith("cuda") else "float32"))
    pipe = diffusers.DiffusionPipeline.from_pretrained(
        str(Path(args.models) / args.shape / MODEL), local_files_only=True,
        torch_dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    _sync(device)
    loaded = time.time() - spawned_at
    image = pipe(prompt=PROMPT, width=args.size, height=args.size,
                 num_inference_steps=args.steps, guidance_scale=7.5,
                 generator=torch.Generator(device="cpu").manual_seed(0),
                 output_type="pil").images[0]
    image.save(io.BytesIO(), format="WEBP")
    print(json.dumps({"load_s": loaded, "first_image_s": time.time() - spawned_at}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="sd15")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    parser.add_argument("--dtype", default="auto", help="auto, float16, bfloat16 or float32")
    parser.add_argument("--size", type=int, default=0, help="image side (default per shape)")
    parser.add_argument("--steps", type=int, default=0, help="steps (default per shape)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-starts", type=int, default=3,
                        help="fresh-process starts to time, bare and worker in turn")
    parser.add_argument("--jobs", type=int, default=8, help="images per phase and round")
    parser.add_argument("--variants", default="",
                        help=f"comma-separated opt-in speed-ups to measure: {', '.join(VARIANTS)}")
    parser.add_argument("--protocols", default="v1,v2",
                        help="the worker's protocols to measure, each against a studio of "
                             "its own (comma-separated: v1, v2)")
    parser.add_argument("--models", default="",
                        help="folder for the saved pipeline (reused when present)")
    parser.add_argument("--out", default="", help="also append the JSON lines to this file")
    parser.add_argument("--cold-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spawned-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.protocols = [p for p in args.protocols.split(",") if p]
    if not args.protocols or any(p not in ("v1", "v2") for p in args.protocols):
        parser.error("--protocols: v1, v2 or v1,v2")
    for variant in args.variants:
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.cold_bare:
        cold_bare(args, args.spawned_at)
        return 0
    out = open(args.out, "a", encoding="utf-8") if args.out else None  # noqa: SIM115
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(args.models or tmp) / args.shape
        folder = models / MODEL
        if not (folder / "model_index.json").is_file():
            started = time.perf_counter()
            build_pipeline(args.shape, folder, args.device)
            _emit({"bench": "gpu", "phase": "build", "shape": args.shape,
                   "seconds": round(time.perf_counter() - started, 1)}, out)
        asyncio.run(Bench(args, models, out).run())
    if out is not None:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
