"""The ``info`` answer to ``describe``: our voices, as the ``wyoming`` package's types.

Home Assistant reads it to offer the voices: it groups them by each voice's
``languages``, shows ``description`` (falling back to ``name``), and sends the chosen
voice's ``name`` back in ``synthesize``. So ``name`` is our voice id (what
``/api/v1/voices`` lists), ``description`` the voice's name and language, and a
multi-speaker voice lists its ``speakers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from wyoming.event import Event
from wyoming.info import Attribution, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker

from ... import __version__
from ...engines.base import Voice
from ...engines.languages import language_name

#: Our program's name in ``info`` (``select-program`` must name it).
PROGRAM_NAME: Final = "mit-tts-streamer"
#: The project has no public home to point at yet; Wyoming requires the field.
PROJECT_URL: Final = ""
#: Who made each engine's voices, for ``attribution``.
ENGINE_AUTHORS: Final = {
    "piper": ("Piper (Open Home Foundation)", "https://github.com/OHF-Voice/piper1-gpl"),
    "kokoro": ("Kokoro (hexgrad)", "https://huggingface.co/hexgrad/Kokoro-82M"),
    "espeak": ("eSpeak NG", "https://github.com/espeak-ng/espeak-ng"),
    "pico": ("SVOX Pico", "https://pypi.org/project/ttspico/"),
    "melo": ("MeloTTS (MyShell.ai)", "https://github.com/myshell-ai/MeloTTS"),
}


def info_event(voices: Sequence[Voice]) -> Event:
    """``info`` listing ``voices`` (every available one, best first per language) under
    one TTS program that supports text streaming."""
    program = TtsProgram(
        name=PROGRAM_NAME,
        attribution=Attribution(name="MIT-TTS-Streamer", url=PROJECT_URL),
        installed=True,
        description="MIT-TTS-Streamer: low-latency streaming text to speech",
        version=__version__,
        voices=[_voice(voice) for voice in voices],
        supports_synthesize_streaming=True,
    )
    return Info(tts=[program]).event()


def _voice(voice: Voice) -> TtsVoice:
    author, url = ENGINE_AUTHORS.get(voice.engine, (voice.engine, PROJECT_URL))
    return TtsVoice(
        name=voice.id,
        attribution=Attribution(name=author, url=url),
        installed=True,
        description=f"{voice.name} ({language_name(voice.language)})",
        version=None,
        languages=[voice.language],
        speakers=[TtsVoiceSpeaker(name=s) for s in voice.speakers] or None,
    )
