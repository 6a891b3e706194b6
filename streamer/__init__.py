"""MIT-TTS-Streamer: a low-latency streaming text-to-speech server."""

__version__ = "0.1.0"
