"""BCP-47 language tags as voices and clients spell them, and how close two tags are.

Clients send tags loosely (``es_MX``, ``ES``, ``pt-br``, MeloTTS's ``JP``); engines
report them in their own dialects (espeak-ng's ``en-gb-x-rp``, ``cmn``, ``ca-va``).
Everything is brought to one canonical form before comparing: the language subtag in
lower case (legacy and MeloTTS aliases replaced), a script in title case, a region in upper
case, variants and private use in lower case, in the order BCP-47 prescribes.

Closeness is what voice resolution ranks by: the same tag, then the same region, then
a macro-region that contains the region (``es-419`` Latin American Spanish for a client
asking for ``es-MX``), then the bare language, then any other region of the language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

#: Language subtags that are not BCP-47 (MeloTTS's language keys, which clients of the
#: original protocol send) or are deprecated,
#: mapped to the subtag a voice would carry, so ``JP`` and ``iw`` find ``ja``, ``he``.
LANGUAGE_ALIASES: Final[dict[str, str]] = {
    "jp": "ja",  # MeloTTS's language key
    "kr": "ko",  # MeloTTS's language key
    "cmn": "zh",  # Mandarin is what every engine here means by "zh"
    "iw": "he",  # deprecated ISO 639 code
    "in": "id",  # deprecated ISO 639 code
    "ji": "yi",  # deprecated ISO 639 code
    "no": "nb",  # the macrolanguage: Bokmål is the written standard voices speak
}

#: UN M.49 macro-regions that voices are tagged with, and the ISO 3166 regions inside
#: them: a client in Mexico (``es-MX``) is better served by ``es-419`` than by ``es``.
MACRO_REGIONS: Final[dict[str, frozenset[str]]] = {
    # Caribbean
    "029": frozenset(
        "AG AI AW BB BL BQ BS CU CW DM DO GD GP HT JM KN KY LC MF MQ MS PR SX TC TT VC VG"
        " VI".split()
    ),
    # Latin America and the Caribbean
    "419": frozenset(
        "AG AI AR AW BB BL BO BQ BR BS BZ CL CO CR CU CW DM DO EC FK GD GF GP GT GY HN HT JM"
        " KN KY LC MF MQ MS MX NI PA PE PR PY SR SV SX TC TT UY VC VE VG VI".split()
    ),
}

_SUBTAG = re.compile(r"^[a-z0-9]{1,8}$")
_LANGUAGE = re.compile(r"^[a-z]{2,8}$")
_SCRIPT = re.compile(r"^[a-z]{4}$")
_REGION = re.compile(r"^(?:[a-z]{2}|[0-9]{3})$")


@dataclass(frozen=True, slots=True)
class LanguageTag:
    """A parsed, canonical BCP-47 tag. ``rest`` holds variants, extensions and private
    use, lower case, in their original order."""

    language: str
    script: str | None = None
    region: str | None = None
    rest: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = [self.language]
        if self.script:
            parts.append(self.script)
        if self.region:
            parts.append(self.region)
        parts.extend(self.rest)
        return "-".join(parts)


def parse_tag(tag: str) -> LanguageTag:
    """Parse ``tag`` leniently: any case, ``_`` as ``-``, script and region in either
    order (espeak-ng writes ``chr-US-Qaaa``). Raises ``ValueError`` if it is not a tag."""
    subtags = tag.strip().lower().replace("_", "-").split("-")
    if not subtags or not all(_SUBTAG.match(s) for s in subtags):
        raise ValueError(f"not a language tag: {tag!r}")
    language, *tail = subtags
    if not _LANGUAGE.match(language):
        raise ValueError(f"not a language tag: {tag!r}")
    script: str | None = None
    region: str | None = None
    rest: list[str] = []
    for index, subtag in enumerate(tail):
        if len(subtag) == 1:
            # A singleton (``x``, ``u``...) starts extensions or private use: everything
            # after it is opaque.
            rest.extend(tail[index:])
            break
        if script is None and not rest and _SCRIPT.match(subtag):
            script = subtag.title()
        elif region is None and not rest and _REGION.match(subtag):
            region = subtag.upper()
        else:
            rest.append(subtag)
    return LanguageTag(LANGUAGE_ALIASES.get(language, language), script, region, tuple(rest))


def canonical_tag(tag: str) -> str:
    """``es_mx`` → ``es-MX``; ``en-gb-x-rp`` → ``en-GB-x-rp``. Raises ``ValueError``."""
    return str(parse_tag(tag))


# espeak-ng codes whose generic reading would be wrong: its two-letter dialect codes
# look like regions (``ca-va`` is Valencian, not Vatican City; ``ru-cl`` is classic
# Russian, not Chile).
_ESPEAK_OVERRIDES: Final[dict[str, str]] = {
    "ca-ba": "ca-x-balear",
    "ca-nw": "ca-x-nw",
    "ca-va": "ca-valencia",
    "ru-cl": "ru-x-classic",
}


def espeak_to_bcp47(code: str) -> str:
    """An espeak-ng language code as a canonical BCP-47 tag: ``en-us`` → ``en-US``,
    ``es-419`` → ``es-419``, ``pt-br`` → ``pt-BR``, ``cmn`` → ``zh``,
    ``ca-va`` → ``ca-valencia``. Raises ``ValueError`` on a code that is no tag."""
    lowered = code.strip().lower()
    return canonical_tag(_ESPEAK_OVERRIDES.get(lowered, lowered))


class Closeness(IntEnum):
    """How well a voice's tag serves a requested tag; lower is better."""

    #: The same canonical tag.
    EXACT = 0
    #: The same region, differing in script or variant (``en-GB-x-rp`` for ``en-GB``).
    SAME_REGION = 1
    #: The voice's region is a macro-region containing the requested one.
    MACRO_REGION = 2
    #: The voice is tagged with the bare language.
    BARE_LANGUAGE = 3
    #: Another region or variant of the same language.
    SAME_LANGUAGE = 4


def closeness(requested: LanguageTag, offered: LanguageTag) -> Closeness | None:
    """How close ``offered`` (a voice's tag) is to ``requested``; ``None`` when the
    languages differ. A bare request (``es``) ranks the bare voice first, then every
    regional one alike."""
    if requested.language != offered.language:
        return None
    if requested == offered:
        return Closeness.EXACT
    if requested.region is not None:
        if offered.region == requested.region:
            return Closeness.SAME_REGION
        if offered.region is not None and requested.region in MACRO_REGIONS.get(
            offered.region, frozenset()
        ):
            return Closeness.MACRO_REGION
    if offered.region is None and offered.script is None and not offered.rest:
        return Closeness.BARE_LANGUAGE
    return Closeness.SAME_LANGUAGE


#: English names of the languages some engine here speaks (every espeak-ng 1.52 voice's
#: language, Kokoro's and Pico's), keyed by canonical language subtag: what a voice list
#: shows instead of a bare code. A language missing here is shown by its tag.
LANGUAGE_NAMES: Final[dict[str, str]] = {
    "af": "Afrikaans", "am": "Amharic", "an": "Aragonese", "ar": "Arabic",
    "as": "Assamese", "az": "Azerbaijani", "ba": "Bashkir", "be": "Belarusian",
    "bg": "Bulgarian", "bn": "Bengali", "bpy": "Bishnupriya Manipuri", "bs": "Bosnian",
    "ca": "Catalan", "chr": "Cherokee", "cs": "Czech", "cv": "Chuvash", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish",
    "fo": "Faroese", "fr": "French", "ga": "Irish", "gd": "Scottish Gaelic",
    "gn": "Guarani", "grc": "Ancient Greek", "gu": "Gujarati", "hak": "Hakka Chinese",
    "haw": "Hawaiian", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian",
    "ht": "Haitian Creole", "hu": "Hungarian", "hy": "Armenian",
    "hyw": "Western Armenian", "ia": "Interlingua", "id": "Indonesian", "io": "Ido",
    "is": "Icelandic", "it": "Italian", "ja": "Japanese", "jbo": "Lojban",
    "ka": "Georgian", "kaa": "Karakalpak", "kk": "Kazakh", "kl": "Greenlandic",
    "kn": "Kannada", "ko": "Korean", "kok": "Konkani", "ku": "Kurdish", "ky": "Kyrgyz",
    "la": "Latin", "lb": "Luxembourgish", "lfn": "Lingua Franca Nova",
    "lt": "Lithuanian", "ltg": "Latgalian", "lv": "Latvian", "mi": "Māori",
    "mk": "Macedonian", "ml": "Malayalam", "mr": "Marathi", "ms": "Malay",
    "mt": "Maltese", "mto": "Totontepec Mixe", "my": "Burmese",
    "nb": "Norwegian Bokmål", "nci": "Classical Nahuatl", "ne": "Nepali",
    "nl": "Dutch", "nog": "Nogai", "om": "Oromo", "or": "Odia", "pa": "Punjabi",
    "pap": "Papiamento", "piqd": "Klingon", "pl": "Polish", "pt": "Portuguese",
    "py": "Pyash", "qdb": "Lang Belta", "qu": "Quechua", "quc": "K'iche'",
    "qya": "Quenya", "ro": "Romanian", "ru": "Russian", "sd": "Sindhi", "shn": "Shan",
    "si": "Sinhala", "sjn": "Sindarin", "sk": "Slovak", "sl": "Slovenian",
    "smj": "Lule Sami", "sq": "Albanian", "sr": "Serbian", "sv": "Swedish",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai", "ti": "Tigrinya",
    "tk": "Turkmen", "tn": "Tswana", "tr": "Turkish", "tt": "Tatar", "ug": "Uyghur",
    "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese",
    "yue": "Cantonese", "zh": "Chinese",
}  # fmt: skip

#: English names of the regions voices are tagged with; others are shown by their code.
REGION_NAMES: Final[dict[str, str]] = {
    "029": "Caribbean", "419": "Latin America", "AR": "Argentina", "AT": "Austria",
    "AU": "Australia", "BE": "Belgium", "BR": "Brazil", "CA": "Canada",
    "CH": "Switzerland", "CN": "China", "CO": "Colombia", "DE": "Germany",
    "ES": "Spain", "FR": "France", "GB": "United Kingdom", "IE": "Ireland",
    "IN": "India", "IT": "Italy", "JP": "Japan", "LV": "Latvia", "MX": "Mexico",
    "PT": "Portugal", "TW": "Taiwan", "US": "United States", "VN": "Vietnam",
}  # fmt: skip


def language_name(tag: str) -> str:
    """A human name for a language tag, in English: ``es`` → ``Spanish``,
    ``es-ES`` → ``Spanish (Spain)``, ``en-US`` → ``English (United States)``,
    ``es-419`` → ``Spanish (Latin America)``. A language or region without a name here
    is shown by its code (``xx-YY`` → ``xx (YY)``); a string that is no tag comes back
    unchanged. Variants and private use are left out: the voice's own name says those.
    """
    try:
        parsed = parse_tag(tag)
    except ValueError:
        return tag
    name = LANGUAGE_NAMES.get(parsed.language, parsed.language)
    if parsed.region is None:
        return name
    return f"{name} ({REGION_NAMES.get(parsed.region, parsed.region)})"
