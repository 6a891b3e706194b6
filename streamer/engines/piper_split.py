"""Sub-sentence streaming for Piper voices: the VITS graph cut in two, decoded in windows.

A Piper voice is one ONNX graph: text encoder (``enc_p``) → stochastic duration
predictor (``dp``) → expansion of the phoneme prior to audio frames → sampling
``z_p = m_p + ε·exp(logs_p)·noise_scale`` → normalizing flow (reverse) → HiFi-GAN
decoder (``dec``). One call returns a whole sentence, so the first audio waits for
the whole sentence's decoder, by far the most expensive part.

Everything after the sampling is convolutional with a finite receptive field along
the frame axis, so we cut the graph right there:

- the *encoder* part takes the model's inputs and returns the *cut tensors*: ``z_p``
  (the sampled latent, ``[1, C, T]``) and every other tensor the flow and decoder read
  from before the cut (in Piper exports: the frame mask ``y_mask``, ``[1, 1, T]``);
  both noise draws happen here, so windowing never changes the sampling;
- the *decoder* part takes the cut tensors (and ``sid`` for multi-speaker voices:
  speaker conditioning is recomputed from it) and returns the audio, ``T·hop``
  samples.

The cut is found by data flow, not by node names: ``z_p`` is the ``Add`` that mixes
the last ``RandomNormalLike`` into the prior; the decoder is every node that depends on
``z_p`` plus the constant (or speaker-only) nodes they need; whatever else they read is
a cut tensor. Each cut tensor must be frame-aligned (last axis ``T``), checked on every
encode.

The decoder then runs over windows of frames, each padded with ``CONTEXT_BEHIND`` and
``CONTEXT_AHEAD`` frames of real latent on each side (fewer at the utterance's
edges, where the one-call model zero-pads too); the context's samples are dropped.
With that much context the windows join into the one-call model's audio (SNR > 100 dB
with 40/32 frames measured here on en_US-joe-medium; 24/20 gave only 68 dB), so with
``noise_scale = noise_w = 0`` the two are equal to float rounding.

The two parts are written once per model file to a cache directory keyed by the
file's SHA-256, atomically (a temporary directory renamed into place), so later starts
load them directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

#: Frames of latent before a window that its audio depends on. The flow's 4 coupling
#: layers of 4 WaveNet convolutions (kernel 5) reach ~32 frames, HiFi-GAN a few more;
#: 34 suffice on joe (DESIGN.md, and 136 dB here); 40 leaves margin for other voices.
CONTEXT_BEHIND: Final = 40
#: Frames after a window that its audio depends on (28 suffice on joe); margin kept.
CONTEXT_AHEAD: Final = 32
#: Frames of the first window of a stream: small, so first audio waits for little
#: decoding (16 frames ≈ 186 ms of audio at 22050 Hz, hop 256), yet long enough that its
#: playback covers the decoding of the next, larger window.
FIRST_WINDOW_FRAMES: Final = 16
#: Each window after the first may be this many times larger than the one before: the
#: audio already queued grows as fast as the next window's cost.
WINDOW_GROWTH: Final = 2
#: Largest window. Each call also decodes up to 72 frames of context: at 128 frames a
#: whole utterance cost 1.50x the one-call decoder, at 192 1.37x, at 256 1.33x
#: (measured); 192 keeps most of the gain while one call (and so one interrupt wait)
#: stays under ~0.2 s on one core.
MAX_WINDOW_FRAMES: Final = 192
#: A remainder shorter than this joins the window before it, so no call pays the full
#: context overhead for a handful of frames.
MIN_TAIL_FRAMES: Final = 16
#: Bumped whenever the cut or the cache layout changes, so stale caches are ignored.
SPLIT_FORMAT_VERSION: Final = 1
#: Read the model file in blocks of this size while hashing it (bounded memory).
HASH_BLOCK_BYTES: Final = 1 << 20

ENCODER_FILE: Final = "encoder.onnx"
DECODER_FILE: Final = "decoder.onnx"
META_FILE: Final = "split.json"

_FloatArray = npt.NDArray[np.float32]


class SplitError(Exception):
    """The model's graph cannot be cut as this module expects (not a Piper VITS graph)."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mit-tts-streamer/piper-split`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mit-tts-streamer" / "piper-split"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class SplitMeta:
    """What the decoder part expects, saved beside the two parts."""

    #: Model inputs the encoder part takes, in the original model's order.
    encoder_inputs: tuple[str, ...]
    #: Cut tensors: encoder outputs and decoder inputs, all ``[..., T]`` frame-aligned;
    #: the first is the sampled latent ``z_p``.
    cut_tensors: tuple[str, ...]
    #: Original model inputs the decoder part reads too (``sid`` for multi-speaker).
    decoder_model_inputs: tuple[str, ...]
    #: The audio output's name in both the original and the decoder part.
    output: str

    def to_json(self) -> dict[str, object]:
        return {
            "version": SPLIT_FORMAT_VERSION,
            "encoder_inputs": list(self.encoder_inputs),
            "cut_tensors": list(self.cut_tensors),
            "decoder_model_inputs": list(self.decoder_model_inputs),
            "output": self.output,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> SplitMeta:
        if data.get("version") != SPLIT_FORMAT_VERSION:
            raise ValueError(f"split format {data.get('version')}, want {SPLIT_FORMAT_VERSION}")
        return SplitMeta(
            encoder_inputs=tuple(data["encoder_inputs"]),
            cut_tensors=tuple(data["cut_tensors"]),
            decoder_model_inputs=tuple(data["decoder_model_inputs"]),
            output=str(data["output"]),
        )


# -- the cut -------------------------------------------------------------------------------


def split_graph(model: Any) -> tuple[Any, Any, SplitMeta]:
    """Cut a Piper VITS ``onnx.ModelProto`` into (encoder, decoder, meta).

    Raises ``SplitError`` when the graph does not have the expected shape.
    """
    import onnx

    graph = model.graph
    nodes = list(graph.node)  # ONNX graphs are stored in topological order
    if len(graph.output) != 1:
        raise SplitError(f"expected one output, found {len(graph.output)}")
    output = graph.output[0].name
    model_inputs = [i.name for i in graph.input]
    initializers = {t.name for t in graph.initializer}

    producer: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node.output:
            if name:
                producer[name] = index
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(index)

    latent = _find_sampled_latent(nodes, consumers)

    # Which model inputs each tensor depends on (forward, in topological order).
    depends: dict[str, frozenset[str]] = {name: frozenset([name]) for name in model_inputs}
    for node in nodes:
        needed = frozenset().union(*(depends.get(name, frozenset()) for name in node.input))
        for name in node.output:
            depends[name] = needed
    # Tensors computed from the latent: the flow and decoder proper.
    after_latent: set[str] = {latent}
    for node in nodes:
        if any(name in after_latent for name in node.input):
            after_latent.update(n for n in node.output if n)
    if output not in after_latent:
        raise SplitError("the sampled latent does not reach the output")
    speaker_inputs = frozenset(model_inputs) - {"input", "input_lengths", "scales"}

    # Walk back from the output. A node belongs to the decoder if it is computed from
    # the latent, or from constants and speaker ids only (cheap, and needed per window);
    # any other tensor it reads comes from the encoder across the cut.
    decoder_nodes: set[int] = set()
    cut: list[str] = [latent]
    decoder_model_inputs: set[str] = set()
    stack = [output]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or name in initializers:
            continue
        seen.add(name)
        if name in model_inputs:
            if name not in speaker_inputs:
                raise SplitError(f"decoder would read model input {name!r}")
            decoder_model_inputs.add(name)
            continue
        if name == latent:
            continue
        if name not in producer:
            raise SplitError(f"tensor {name!r} has no producer")
        if name in after_latent or depends.get(name, frozenset()) <= speaker_inputs:
            index = producer[name]
            decoder_nodes.add(index)
            stack.extend(n for n in nodes[index].input if n)
        elif name not in cut:
            cut.append(name)

    for index in decoder_nodes:
        if nodes[index].op_type.startswith("Random"):
            raise SplitError(f"decoder part would sample noise ({nodes[index].name})")

    typed = onnx.shape_inference.infer_shapes(model)
    inferred = {v.name: v for v in typed.graph.value_info}
    missing = [name for name in cut if name not in inferred]
    if missing:
        raise SplitError(f"no type inferred for cut tensors {missing}")

    unshaped = [name for name in cut if not inferred[name].type.tensor_type.HasField("shape")]
    if unshaped:
        raise SplitError(f"no rank inferred for cut tensors {unshaped}")

    def value_info(name: str) -> Any:
        elem_type = inferred[name].type.tensor_type.elem_type
        rank = len(inferred[name].type.tensor_type.shape.dim)
        # Every axis symbolic: the parts must accept any batch and any frame count.
        shape = [f"{name}_dim{axis}" for axis in range(rank)]
        return onnx.helper.make_tensor_value_info(name, elem_type, shape)

    inputs_by_name = {v.name: v for v in graph.input}
    # The encoder reads every model input it needs (sid too, for duration prediction).
    encoder_nodes = _ancestors(cut, producer, nodes, frozenset(model_inputs))
    encoder_reads = {n for i in encoder_nodes for n in nodes[i].input if n}
    encoder_input_names = [n for n in model_inputs if n in encoder_reads]
    decoder_inputs_ordered = [n for n in model_inputs if n in decoder_model_inputs]

    encoder = _make_model(
        model,
        [nodes[i] for i in sorted(encoder_nodes)],
        [inputs_by_name[n] for n in encoder_input_names],
        [value_info(n) for n in cut],
        "piper encoder (text → sampled latent)",
    )
    decoder = _make_model(
        model,
        [nodes[i] for i in sorted(decoder_nodes)],
        [value_info(n) for n in cut] + [inputs_by_name[n] for n in decoder_inputs_ordered],
        [graph.output[0]],
        "piper decoder (latent window → audio)",
    )
    meta = SplitMeta(
        encoder_inputs=tuple(encoder_input_names),
        cut_tensors=tuple(cut),
        decoder_model_inputs=tuple(decoder_inputs_ordered),
        output=output,
    )
    return encoder, decoder, meta


def _find_sampled_latent(nodes: Sequence[Any], consumers: dict[str, list[int]]) -> str:
    """The tensor ``z_p``: the ``Add`` downstream of the last ``RandomNormalLike``.

    The duration predictor samples noise first; the prior's sampling is the last one.
    """
    randoms = [i for i, n in enumerate(nodes) if n.op_type in ("RandomNormalLike", "RandomNormal")]
    if not randoms:
        raise SplitError("no noise sampling node: not a VITS graph")
    name = nodes[randoms[-1]].output[0]
    # ε → ε·σ → ε·σ·noise_scale → m_p + … : follow single consumers through Mul to Add.
    for _ in range(8):
        users = consumers.get(name, [])
        if len(users) != 1:
            break
        node = nodes[users[0]]
        if node.op_type == "Add":
            return str(node.output[0])
        if node.op_type != "Mul":
            break
        name = node.output[0]
    raise SplitError("cannot find where the sampled noise joins the prior")


def _ancestors(
    names: Sequence[str], producer: dict[str, int], nodes: Sequence[Any], stop: frozenset[str]
) -> set[int]:
    found: set[int] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in stop or name not in producer:
            continue
        index = producer[name]
        if index in found:
            continue
        found.add(index)
        stack.extend(n for n in nodes[index].input if n)
    return found


def _make_model(
    model: Any, nodes: list[Any], inputs: list[Any], outputs: list[Any], doc: str
) -> Any:
    import onnx

    used = {n for node in nodes for n in node.input}
    initializers = [t for t in model.graph.initializer if t.name in used]
    graph = onnx.helper.make_graph(nodes, doc, inputs, outputs, initializer=initializers)
    part = onnx.helper.make_model(
        graph, opset_imports=model.opset_import, producer_name="mit-tts-streamer piper_split"
    )
    part.ir_version = model.ir_version
    onnx.checker.check_model(part)
    return part


# -- cache -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SplitFiles:
    encoder: Path
    decoder: Path
    meta: SplitMeta
    #: True when this call cut the model, False when it came from the cache.
    created: bool


def split_model(model_path: Path, cache_dir: Path | None = None) -> SplitFiles:
    """The cut parts of ``model_path``, from the cache or cut now and cached.

    Safe against concurrent processes: parts are written to a temporary directory that
    is renamed into place; the loser of a race uses the winner's parts.
    """
    import onnx

    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    target = cache_dir / file_sha256(model_path)
    cached = _read_cache(target)
    if cached is not None:
        return cached
    logger.info("cutting Piper model %s for windowed streaming", model_path)
    encoder, decoder, meta = split_graph(onnx.load(str(model_path)))
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir))
    try:
        onnx.save(encoder, str(scratch / ENCODER_FILE))
        onnx.save(decoder, str(scratch / DECODER_FILE))
        (scratch / META_FILE).write_text(json.dumps(meta.to_json(), indent=2), encoding="utf-8")
        if target.exists():  # stale format from an older version: replace it
            shutil.rmtree(target, ignore_errors=True)
        try:
            scratch.rename(target)
        except OSError:
            cached = _read_cache(target)  # another process won the race
            if cached is None:
                raise
            return cached
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return SplitFiles(target / ENCODER_FILE, target / DECODER_FILE, meta, created=True)


def _read_cache(target: Path) -> SplitFiles | None:
    try:
        meta = SplitMeta.from_json(json.loads((target / META_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    encoder, decoder = target / ENCODER_FILE, target / DECODER_FILE
    if not (encoder.is_file() and decoder.is_file()):
        return None
    return SplitFiles(encoder, decoder, meta, created=False)


# -- windowed synthesis ---------------------------------------------------------------------


def window_plan(frames: int, *, small_start: bool = True) -> list[tuple[int, int]]:
    """Output windows ``[start, end)`` covering ``frames``: small first, then growing.

    ``small_start=False`` starts at the largest size (audio is already playing).
    """
    windows: list[tuple[int, int]] = []
    size = FIRST_WINDOW_FRAMES if small_start else MAX_WINDOW_FRAMES
    start = 0
    while start < frames:
        end = min(frames, start + size)
        if frames - end < MIN_TAIL_FRAMES:
            end = frames
        windows.append((start, end))
        start = end
        size = min(MAX_WINDOW_FRAMES, size * WINDOW_GROWTH)
    return windows


@dataclass(frozen=True, slots=True)
class Latent:
    """One utterance's cut tensors, ready to be decoded window by window."""

    tensors: tuple[_FloatArray, ...]
    frames: int
    speaker: npt.NDArray[np.int64] | None


class WindowedDecoder:
    """A Piper model cut into encoder and windowed decoder sessions.

    Thread-safe: onnxruntime sessions may run concurrently; no state between calls.
    """

    def __init__(self, encoder: Any, decoder: Any, meta: SplitMeta, hop_length: int) -> None:
        self._encoder = encoder
        self._decoder = decoder
        self._meta = meta
        self._hop = hop_length
        self.created = False

    @property
    def meta(self) -> SplitMeta:
        return self._meta

    @classmethod
    def load(
        cls,
        model_path: Path,
        *,
        cache_dir: Path | None,
        session_options: Any,
        providers: list[str],
        hop_length: int = 256,
    ) -> WindowedDecoder:
        """Cut (or read from the cache) and open both parts. Raises on failure."""
        import onnxruntime

        files = split_model(model_path, cache_dir)
        encoder = onnxruntime.InferenceSession(
            str(files.encoder), sess_options=session_options, providers=providers
        )
        decoder = onnxruntime.InferenceSession(
            str(files.decoder), sess_options=session_options, providers=providers
        )
        windowed = cls(encoder, decoder, files.meta, hop_length)
        windowed.created = files.created
        return windowed

    def encode(
        self, ids: Sequence[int], scales: npt.NDArray[np.float32], speaker_id: int | None
    ) -> Latent:
        """Run the encoder part: durations, expansion and sampling for one utterance."""
        feeds: dict[str, np.ndarray[Any, Any]] = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "scales": np.asarray(scales, dtype=np.float32),
        }
        speaker = None
        if speaker_id is not None:
            speaker = np.asarray([speaker_id], dtype=np.int64)
            feeds["sid"] = speaker
        feeds = {k: v for k, v in feeds.items() if k in self._meta.encoder_inputs}
        tensors = tuple(self._encoder.run(list(self._meta.cut_tensors), feeds))
        frames = int(tensors[0].shape[-1])
        for name, tensor in zip(self._meta.cut_tensors, tensors, strict=True):
            if tensor.ndim < 2 or tensor.shape[-1] != frames:
                raise SplitError(f"cut tensor {name} of shape {tensor.shape} is not per frame")
        return Latent(tensors, frames, speaker)

    def decode(self, latent: Latent, start: int, end: int) -> _FloatArray:
        """Audio for frames ``[start, end)``: decoded with context, context trimmed."""
        lo = max(0, start - CONTEXT_BEHIND)
        hi = min(latent.frames, end + CONTEXT_AHEAD)
        feeds: dict[str, np.ndarray[Any, Any]] = {
            name: np.ascontiguousarray(tensor[..., lo:hi])
            for name, tensor in zip(self._meta.cut_tensors, latent.tensors, strict=True)
        }
        if "sid" in self._meta.decoder_model_inputs:
            if latent.speaker is None:
                raise SplitError("multi-speaker decoder needs a speaker id")
            feeds["sid"] = latent.speaker
        audio = self._decoder.run([self._meta.output], feeds)[0].reshape(-1)
        first = (start - lo) * self._hop
        window: _FloatArray = audio[first : first + (end - start) * self._hop]
        return window

    def stream(
        self,
        ids: Sequence[int],
        scales: npt.NDArray[np.float32],
        speaker_id: int | None,
        *,
        small_start: bool = True,
    ) -> Iterator[_FloatArray]:
        """One utterance's audio, window by window.

        The first ``next()`` runs the encoder and the first window; each later one runs
        one decoder window.
        """
        latent = self.encode(ids, scales, speaker_id)
        for start, end in window_plan(latent.frames, small_start=small_start):
            yield self.decode(latent, start, end)
