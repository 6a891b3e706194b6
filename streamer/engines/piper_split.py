"""Sub-sentence streaming for Piper voices: the VITS graph cut in three, decoded in windows.

A Piper voice is one ONNX graph: text encoder (``enc_p``) → stochastic duration
predictor (``dp``) → expansion of the phoneme prior to audio frames → sampling
``z_p = m_p + ε·exp(logs_p)·noise_scale`` → normalizing flow (reverse) → HiFi-GAN
decoder (``dec``). One call returns a whole sentence, so the first audio waits for
the whole sentence's decoder, by far the most expensive part.

Everything after the sampling is convolutional with a finite receptive field along
the frame axis, so we cut the graph there, and once more between flow and HiFi-GAN:

- the *encoder* part takes the model's inputs and returns the *cut tensors*: ``z_p``
  (the sampled latent, ``[1, C, T]``) and every other tensor the flow reads from before
  the cut (in Piper exports: the frame mask ``y_mask``, ``[1, 1, T]``); both noise
  draws happen here, so windowing never changes the sampling;
- the *flow* part takes the cut tensors (and ``sid`` for multi-speaker voices: speaker
  conditioning is recomputed from it) and returns HiFi-GAN's input ``z·y_mask``,
  ``[1, C, T]``;
- the *vocoder* part (HiFi-GAN) takes that input (and ``sid``) and returns the audio,
  ``T·hop`` samples.

The cuts are found by data flow, not by node names. ``z_p`` is the ``Add`` that mixes
the last ``RandomNormalLike`` into the prior. The flow and decoder together are every
node that depends on ``z_p`` plus the constant (or speaker-only) nodes they need;
whatever else they read is a cut tensor. Each cut tensor must be frame-aligned (last
axis ``T``), checked on every encode. HiFi-GAN's input is the output of the last node,
in the graph's (topological) order, that reads a cut tensor other than ``z_p``: the
flow masks its activations with ``y_mask`` in every layer and ends with ``z·y_mask``,
while HiFi-GAN never reads the mask. That tensor must carry all the cut's information
to the output (HiFi-GAN reads nothing else but constants and ``sid``), have rank 3, and
be frame-aligned on every call; a graph where any of this fails raises ``SplitError``
and the voice streams by clause instead.

Each window of frames is then decoded in two steps, each with the context its own
receptive field needs (the context's output is dropped): HiFi-GAN over the window and
``VOCODER_CONTEXT_FRAMES`` on each side, the flow over that range and
``FLOW_CONTEXT_BEHIND``/``FLOW_CONTEXT_AHEAD`` more. At the utterance's edges the
context is cut short, where the one-call model's convolutions see zero padding too.
HiFi-GAN costs ~5x the flow per frame but needs less than a third of its context, so
this costs far less than running both over the flow's context. The windows join into
the one-call model's audio: with ``noise_scale = noise_w = 0`` the two are equal to
float rounding (SNR > 100 dB on en_US-joe-medium, see BENCHMARKS.md).

The three parts are written once per model file to a cache directory keyed by the
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

#: Frames of latent before a window that the flow's output there depends on: 4 coupling
#: layers of 4 WaveNet convolutions (kernel 5) reach ~32 frames; 32 gave 143 dB on joe,
#: 40 leaves margin for other voices.
FLOW_CONTEXT_BEHIND: Final = 40
#: Frames of latent after a window that the flow's output there depends on (as behind).
FLOW_CONTEXT_AHEAD: Final = 32
#: Frames of HiFi-GAN input on each side of a window that its audio depends on: 12 gave
#: 123 dB on joe, as much as 16 (float rounding), while 8 gave only 63 dB.
VOCODER_CONTEXT_FRAMES: Final = 12
#: Frames of the first window of a stream: small, so first audio waits for little
#: decoding (16 frames ≈ 186 ms of audio at 22050 Hz, hop 256), yet long enough that its
#: playback covers the decoding of the next, larger window even when other streams
#: share the cores.
FIRST_WINDOW_FRAMES: Final = 16
#: First window when the caller says inference is otherwise idle (``quick_start``):
#: half the decoding before first audio; its 93 ms of playback still cover the next
#: window's decoding when nothing else runs, but not under load (underruns measured).
QUICK_FIRST_WINDOW_FRAMES: Final = 8
#: Each window after the first may be this many times larger than the one before: the
#: audio already queued grows as fast as the next window's cost.
WINDOW_GROWTH: Final = 2
#: Largest window: one call (and so one interrupt's wait) stays under ~0.2 s on one
#: core, while the context's share of each call stays small.
MAX_WINDOW_FRAMES: Final = 192
#: A remainder shorter than this joins the window before it, so no call pays the full
#: context overhead for a handful of frames.
MIN_TAIL_FRAMES: Final = 16
#: Bumped whenever the cut or the cache layout changes, so stale caches are ignored.
#: 2: the decoder part is cut again into flow and vocoder.
SPLIT_FORMAT_VERSION: Final = 2
#: Read the model file in blocks of this size while hashing it (bounded memory).
HASH_BLOCK_BYTES: Final = 1 << 20
#: Model inputs that carry the text and its scales; any other input (``sid``) only
#: conditions on the speaker, so nodes computed from it alone may run in any part.
TEXT_INPUTS: Final = frozenset({"input", "input_lengths", "scales"})
#: Rank of HiFi-GAN's input: ``[batch, channels, frames]``.
VOCODER_INPUT_RANK: Final = 3

ENCODER_FILE: Final = "encoder.onnx"
FLOW_FILE: Final = "flow.onnx"
VOCODER_FILE: Final = "vocoder.onnx"
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
    """How the three parts connect, saved beside them."""

    #: Model inputs the encoder part takes, in the original model's order.
    encoder_inputs: tuple[str, ...]
    #: Cut tensors: encoder outputs and flow inputs, all ``[..., T]`` frame-aligned;
    #: the first is the sampled latent ``z_p``.
    cut_tensors: tuple[str, ...]
    #: Original model inputs the flow part reads too (``sid`` for multi-speaker).
    flow_model_inputs: tuple[str, ...]
    #: HiFi-GAN's input ``z·y_mask``: the flow's output and the vocoder's first input.
    vocoder_input: str
    #: Original model inputs the vocoder part reads too (``sid`` for multi-speaker).
    vocoder_model_inputs: tuple[str, ...]
    #: The audio output's name in both the original and the vocoder part.
    output: str

    def to_json(self) -> dict[str, object]:
        return {
            "version": SPLIT_FORMAT_VERSION,
            "encoder_inputs": list(self.encoder_inputs),
            "cut_tensors": list(self.cut_tensors),
            "flow_model_inputs": list(self.flow_model_inputs),
            "vocoder_input": self.vocoder_input,
            "vocoder_model_inputs": list(self.vocoder_model_inputs),
            "output": self.output,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> SplitMeta:
        if data.get("version") != SPLIT_FORMAT_VERSION:
            raise ValueError(f"split format {data.get('version')}, want {SPLIT_FORMAT_VERSION}")
        return SplitMeta(
            encoder_inputs=tuple(data["encoder_inputs"]),
            cut_tensors=tuple(data["cut_tensors"]),
            flow_model_inputs=tuple(data["flow_model_inputs"]),
            vocoder_input=str(data["vocoder_input"]),
            vocoder_model_inputs=tuple(data["vocoder_model_inputs"]),
            output=str(data["output"]),
        )


@dataclass(frozen=True, slots=True)
class SplitModels:
    """The three parts as ``onnx.ModelProto`` (untyped library), and how they connect."""

    encoder: Any
    flow: Any
    vocoder: Any
    meta: SplitMeta


# -- the cut -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Graph:
    """A model's graph with the indexes the cut needs."""

    nodes: list[Any]  # onnx.NodeProto, stored in topological order
    producer: dict[str, int]
    initializers: frozenset[str]
    model_inputs: tuple[str, ...]
    #: Inputs that only condition on the speaker (``sid``).
    speaker_inputs: frozenset[str]
    #: Which model inputs each tensor is computed from.
    depends: dict[str, frozenset[str]]

    @staticmethod
    def of(graph: Any) -> _Graph:
        nodes = list(graph.node)
        model_inputs = tuple(i.name for i in graph.input)
        producer = {name: index for index, node in enumerate(nodes) for name in node.output if name}
        depends: dict[str, frozenset[str]] = {name: frozenset([name]) for name in model_inputs}
        for node in nodes:
            needed = frozenset().union(*(depends.get(name, frozenset()) for name in node.input))
            for name in node.output:
                depends[name] = needed
        return _Graph(
            nodes=nodes,
            producer=producer,
            initializers=frozenset(t.name for t in graph.initializer),
            model_inputs=model_inputs,
            speaker_inputs=frozenset(model_inputs) - TEXT_INPUTS,
            depends=depends,
        )

    def computed_from(self, source: str) -> set[str]:
        """Every tensor computed (directly or not) from ``source``, and ``source``."""
        found = {source}
        for node in self.nodes:
            if any(name in found for name in node.input):
                found.update(name for name in node.output if name)
        return found


@dataclass(frozen=True, slots=True)
class _Part:
    """The nodes that compute one tensor from another, and what they read besides."""

    nodes: frozenset[int]
    #: Tensors read from before the cut, ``source`` first.
    cut: tuple[str, ...]
    #: Speaker inputs read, in the model's input order.
    model_inputs: tuple[str, ...]


def _part(graph: _Graph, source: str, target: str) -> _Part:
    """The nodes between ``source`` and ``target``.

    Walks back from ``target``. A node belongs to the part if it is computed from
    ``source``, or from constants and speaker ids only (cheap, and needed per window);
    any other tensor it reads comes from before the cut.
    """
    after_source = graph.computed_from(source)
    if target not in after_source:
        raise SplitError(f"{target!r} is not computed from {source!r}")
    nodes: set[int] = set()
    cut: list[str] = [source]
    model_inputs: set[str] = set()
    stack = [target]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or name in graph.initializers:
            continue
        seen.add(name)
        if name in graph.model_inputs:
            if name not in graph.speaker_inputs:
                raise SplitError(f"the part computing {target!r} would read input {name!r}")
            model_inputs.add(name)
            continue
        if name == source:
            continue
        if name not in graph.producer:
            raise SplitError(f"tensor {name!r} has no producer")
        if name in after_source or graph.depends.get(name, frozenset()) <= graph.speaker_inputs:
            index = graph.producer[name]
            nodes.add(index)
            stack.extend(n for n in graph.nodes[index].input if n)
        elif name not in cut:
            cut.append(name)
    for index in nodes:
        if graph.nodes[index].op_type.startswith("Random"):
            raise SplitError(f"a decoding part would sample noise ({graph.nodes[index].name})")
    ordered_inputs = tuple(n for n in graph.model_inputs if n in model_inputs)
    return _Part(frozenset(nodes), tuple(cut), ordered_inputs)


def split_graph(model: Any) -> SplitModels:
    """Cut a Piper VITS ``onnx.ModelProto`` into encoder, flow and vocoder parts.

    Raises ``SplitError`` when the graph does not have the expected shape.
    """
    import onnx

    if len(model.graph.output) != 1:
        raise SplitError(f"expected one output, found {len(model.graph.output)}")
    output = model.graph.output[0].name
    graph = _Graph.of(model.graph)

    latent = _find_sampled_latent(graph.nodes)
    decoder = _part(graph, latent, output)  # flow and HiFi-GAN together
    vocoder_input = _find_vocoder_input(graph, decoder)
    flow = _part(graph, latent, vocoder_input)
    vocoder = _part(graph, vocoder_input, output)
    if vocoder.cut != (vocoder_input,):
        raise SplitError(
            f"HiFi-GAN would read {list(vocoder.cut[1:])} besides its input {vocoder_input!r}"
        )

    typed = onnx.shape_inference.infer_shapes(model)
    inferred = {v.name: v for v in typed.graph.value_info}
    missing = [name for name in (*flow.cut, vocoder_input) if name not in inferred]
    if missing:
        raise SplitError(f"no type inferred for cut tensors {missing}")
    unshaped = [
        name
        for name in (*flow.cut, vocoder_input)
        if not inferred[name].type.tensor_type.HasField("shape")
    ]
    if unshaped:
        raise SplitError(f"no rank inferred for cut tensors {unshaped}")
    rank = len(inferred[vocoder_input].type.tensor_type.shape.dim)
    if rank != VOCODER_INPUT_RANK:
        raise SplitError(f"HiFi-GAN's input {vocoder_input!r} has rank {rank}")

    def value_info(name: str) -> Any:
        elem_type = inferred[name].type.tensor_type.elem_type
        rank = len(inferred[name].type.tensor_type.shape.dim)
        # Every axis symbolic: the parts must accept any batch and any frame count.
        shape = [f"{name}_dim{axis}" for axis in range(rank)]
        return onnx.helper.make_tensor_value_info(name, elem_type, shape)

    inputs_by_name = {v.name: v for v in model.graph.input}
    # The encoder reads every model input it needs (sid too, for duration prediction).
    encoder_nodes = _ancestors(flow.cut, graph, frozenset(graph.model_inputs))
    encoder_reads = {n for i in encoder_nodes for n in graph.nodes[i].input if n}
    encoder_inputs = tuple(n for n in graph.model_inputs if n in encoder_reads)

    def nodes_of(indexes: Iterable[int]) -> list[Any]:
        return [graph.nodes[i] for i in sorted(indexes)]

    return SplitModels(
        encoder=_make_model(
            model,
            nodes_of(encoder_nodes),
            [inputs_by_name[n] for n in encoder_inputs],
            [value_info(n) for n in flow.cut],
            "piper encoder (text → sampled latent)",
        ),
        flow=_make_model(
            model,
            nodes_of(flow.nodes),
            [value_info(n) for n in flow.cut] + [inputs_by_name[n] for n in flow.model_inputs],
            [value_info(vocoder_input)],
            "piper flow (latent window → HiFi-GAN input)",
        ),
        vocoder=_make_model(
            model,
            nodes_of(vocoder.nodes),
            [value_info(vocoder_input)] + [inputs_by_name[n] for n in vocoder.model_inputs],
            [model.graph.output[0]],
            "piper vocoder (HiFi-GAN input window → audio)",
        ),
        meta=SplitMeta(
            encoder_inputs=encoder_inputs,
            cut_tensors=flow.cut,
            flow_model_inputs=flow.model_inputs,
            vocoder_input=vocoder_input,
            vocoder_model_inputs=vocoder.model_inputs,
            output=output,
        ),
    )


def _find_sampled_latent(nodes: Sequence[Any]) -> str:
    """The tensor ``z_p``: the ``Add`` downstream of the last ``RandomNormalLike``.

    The duration predictor samples noise first; the prior's sampling is the last one.
    """
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(nodes):
        for name in node.input:
            if name:
                consumers.setdefault(name, []).append(index)
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


def _find_vocoder_input(graph: _Graph, decoder: _Part) -> str:
    """HiFi-GAN's input: the output of the decoder's last node reading the frame mask.

    The frame mask is any cut tensor but the latent. The flow multiplies by it in every
    layer and last in ``z·y_mask``, which HiFi-GAN's first convolution reads; HiFi-GAN
    itself never reads it. The caller checks that the tensor found carries everything
    the rest of the decoder needs.
    """
    masks = set(decoder.cut[1:])
    if not masks:
        raise SplitError("the decoder reads no frame mask: cannot tell the flow from HiFi-GAN")
    readers = [i for i in sorted(decoder.nodes) if masks.intersection(graph.nodes[i].input)]
    last = graph.nodes[readers[-1]]
    if len(last.output) != 1:
        raise SplitError(f"{last.name} has {len(last.output)} outputs, not HiFi-GAN's input")
    return str(last.output[0])


def _ancestors(names: Sequence[str], graph: _Graph, stop: frozenset[str]) -> set[int]:
    found: set[int] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in stop or name not in graph.producer:
            continue
        index = graph.producer[name]
        if index in found:
            continue
        found.add(index)
        stack.extend(n for n in graph.nodes[index].input if n)
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
    flow: Path
    vocoder: Path
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
    parts = split_graph(onnx.load(str(model_path)))
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir))
    try:
        onnx.save(parts.encoder, str(scratch / ENCODER_FILE))
        onnx.save(parts.flow, str(scratch / FLOW_FILE))
        onnx.save(parts.vocoder, str(scratch / VOCODER_FILE))
        meta_json = json.dumps(parts.meta.to_json(), indent=2)
        (scratch / META_FILE).write_text(meta_json, encoding="utf-8")
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
    return SplitFiles(
        target / ENCODER_FILE, target / FLOW_FILE, target / VOCODER_FILE, parts.meta, created=True
    )


def _read_cache(target: Path) -> SplitFiles | None:
    """The cut model cached at ``target``; None when there is none, or none usable
    (then it is cut again)."""
    try:
        meta = SplitMeta.from_json(json.loads((target / META_FILE).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # An older version's format, or a torn write: not worth more than a note.
        logger.info("cached cut model %s stale or unreadable (%s); cutting again", target, exc)
        return None
    files = (target / ENCODER_FILE, target / FLOW_FILE, target / VOCODER_FILE)
    if not all(path.is_file() for path in files):
        return None
    return SplitFiles(*files, meta, created=False)


# -- windowed synthesis ---------------------------------------------------------------------


def window_plan(frames: int, first_frames: int = FIRST_WINDOW_FRAMES) -> list[tuple[int, int]]:
    """Output windows ``[start, end)`` covering ``frames``: ``first_frames``, then growing.

    Pass ``MAX_WINDOW_FRAMES`` when audio is already playing and no window need be small.
    """
    if first_frames < 1:
        raise ValueError(f"first window of {first_frames} frames")
    windows: list[tuple[int, int]] = []
    size = min(first_frames, MAX_WINDOW_FRAMES)
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
    """A Piper model cut into encoder, flow and vocoder sessions.

    Thread-safe: onnxruntime sessions may run concurrently; no state between calls.
    """

    def __init__(
        self, encoder: Any, flow: Any, vocoder: Any, meta: SplitMeta, hop_length: int
    ) -> None:
        self._encoder = encoder
        self._flow = flow
        self._vocoder = vocoder
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
        """Cut (or read from the cache) and open the three parts. Raises on failure."""
        import onnxruntime

        files = split_model(model_path, cache_dir)

        def open_part(path: Path) -> Any:
            return onnxruntime.InferenceSession(
                str(path), sess_options=session_options, providers=providers
            )

        windowed = cls(
            open_part(files.encoder),
            open_part(files.flow),
            open_part(files.vocoder),
            files.meta,
            hop_length,
        )
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
        """Audio for frames ``[start, end)``, the same as the one-call model's there.

        HiFi-GAN runs over the window and ``VOCODER_CONTEXT_FRAMES`` on each side (fewer
        at the utterance's edges), the flow over that and its own context.
        """
        if not 0 <= start < end <= latent.frames:
            raise ValueError(f"window [{start}, {end}) outside 0..{latent.frames}")
        lo = max(0, start - VOCODER_CONTEXT_FRAMES)
        hi = min(latent.frames, end + VOCODER_CONTEXT_FRAMES)
        audio = self.run_vocoder(self.run_flow(latent, lo, hi), latent.speaker)
        first = (start - lo) * self._hop
        window: _FloatArray = audio[first : first + (end - start) * self._hop]
        return window

    def run_flow(self, latent: Latent, start: int, end: int) -> _FloatArray:
        """HiFi-GAN's input for frames ``[start, end)``: the flow with its context."""
        lo = max(0, start - FLOW_CONTEXT_BEHIND)
        hi = min(latent.frames, end + FLOW_CONTEXT_AHEAD)
        feeds: dict[str, np.ndarray[Any, Any]] = {
            name: np.ascontiguousarray(tensor[..., lo:hi])
            for name, tensor in zip(self._meta.cut_tensors, latent.tensors, strict=True)
        }
        feeds.update(self._speaker_feeds(self._meta.flow_model_inputs, latent.speaker))
        hidden = self._flow.run([self._meta.vocoder_input], feeds)[0]
        if hidden.ndim != VOCODER_INPUT_RANK or hidden.shape[-1] != hi - lo:
            raise SplitError(f"HiFi-GAN input of shape {hidden.shape} for {hi - lo} frames")
        window: _FloatArray = np.ascontiguousarray(hidden[..., start - lo : end - lo])
        return window

    def run_vocoder(
        self, hidden: _FloatArray, speaker: npt.NDArray[np.int64] | None
    ) -> _FloatArray:
        """HiFi-GAN alone: ``hop`` samples per frame of ``hidden``, edges zero-padded."""
        feeds: dict[str, np.ndarray[Any, Any]] = {self._meta.vocoder_input: hidden}
        feeds.update(self._speaker_feeds(self._meta.vocoder_model_inputs, speaker))
        audio: _FloatArray = self._vocoder.run([self._meta.output], feeds)[0].reshape(-1)
        if audio.size != hidden.shape[-1] * self._hop:
            raise SplitError(f"{audio.size} samples for {hidden.shape[-1]} frames")
        return audio

    @staticmethod
    def _speaker_feeds(
        names: Sequence[str], speaker: npt.NDArray[np.int64] | None
    ) -> dict[str, np.ndarray[Any, Any]]:
        if "sid" not in names:
            return {}
        if speaker is None:
            raise SplitError("multi-speaker model needs a speaker id")
        return {"sid": speaker}

    def stream(
        self,
        ids: Sequence[int],
        scales: npt.NDArray[np.float32],
        speaker_id: int | None,
        *,
        first_frames: int = FIRST_WINDOW_FRAMES,
    ) -> Iterator[_FloatArray]:
        """One utterance's audio, window by window (``window_plan``).

        The first ``next()`` runs the encoder and the first window; each later one runs
        one window.
        """
        latent = self.encode(ids, scales, speaker_id)
        for start, end in window_plan(latent.frames, first_frames):
            yield self.decode(latent, start, end)
