"""Language tags for `--lang` and `[defaults] language`: checked, and put in canonical form.

A tag is a BCP 47 language tag of the kind the three platforms take: a language (ISO 639-1,
or one of the three-letter codes Mastodon offers), then optionally a script (`Hant`) and a
region (`BR`, or a UN M.49 number such as `419`): `en`, `pt-BR`, `zh-Hant-TW`, `es-419`.
Mastodon stores the language alone (`pt`), Bluesky the whole tag, Nostr (NIP-32) the
language under the ISO-639-1 namespace.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from plurcast.errors import InvalidInput


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


ISO_639_1 = _words(
    """aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy
    da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht
    hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky
    la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny
    oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss
    st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo
    za zh zu"""
)
# The three-letter languages Mastodon's composer offers besides ISO 639-1.
EXTRA_LANGUAGES = _words(
    """ast chr ckb cnr csb gsw jbo kab kmr ldn lfn moh nds pdc sco sma smj szl tai tok zba
    zgh"""
)
ISO_3166_1 = _words(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW"""
)
_TAG = re.compile(
    r"(?P<language>[A-Za-z]{2,3})(?:-(?P<script>[A-Za-z]{4}))?(?:-(?P<region>[A-Za-z]{2}|\d{3}))?"
)


def canonical(tag: str) -> str:
    """`tag` checked and in canonical case (`pt-br` → `pt-BR`), or InvalidInput (exit 3)."""
    text = tag.strip().replace("_", "-")
    hint = "give a language code such as en, de, pt-BR or zh-Hant"
    match = _TAG.fullmatch(text)
    if match is None:
        raise InvalidInput(f'"{tag}" is not a language tag', hint)
    language = match["language"].lower()
    if language not in ISO_639_1 and language not in EXTRA_LANGUAGES:
        raise InvalidInput(f'"{tag}": {language} is not a known language code', hint)
    parts = [language]
    if match["script"]:
        parts.append(match["script"].title())
    region = match["region"]
    if region:
        if region.isalpha() and region.upper() not in ISO_3166_1:
            raise InvalidInput(f'"{tag}": {region} is not a known country code', hint)
        parts.append(region.upper())
    return "-".join(parts)


def primary(tag: str) -> str:
    """The language alone (`pt-BR` → `pt`), as Mastodon stores it."""
    return tag.split("-", 1)[0]


def namespace(tag: str) -> str:
    """The NIP-32 label namespace for the language of `tag`."""
    return "ISO-639-1" if len(primary(tag)) == 2 else "ISO-639-3"


def checked(values: Sequence[str]) -> tuple[str, ...]:
    """`--lang en --lang pt-br,de` → ("en", "pt-BR", "de"): each checked, each once, at most
    MAX_LANGUAGES (Bluesky's limit; Mastodon takes the first)."""
    from plurcast.platforms.registry import MAX_LANGUAGES

    tags: list[str] = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            tag = canonical(part)
            if tag not in tags:
                tags.append(tag)
    if not tags:
        raise InvalidInput("no language given", "give a language code such as en or pt-BR")
    if len(tags) > MAX_LANGUAGES:
        raise InvalidInput(
            f"{len(tags)} languages, over the limit of {MAX_LANGUAGES} per post",
            "give the post's main languages only",
        )
    return tuple(tags)
