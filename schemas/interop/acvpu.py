"""Consciousness on the ACVPU scale as UK wards chart it for NEWS2, read from HL7 v2 and FHIR.

NEWS2 (Royal College of Physicians, 2017, chart 1) scores 3 points for any level of
consciousness other than Alert: new Confusion, or a response to Voice or Pain, or Unresponsive;
qSOFA reads any of these as altered mentation. Without it, NEWS2 at a hospital that charts ACVPU
(the NEWS2 observation chart's own scale) misses the 3 points of an acutely confused patient.

Coded as UK NEWS2 FHIR implementation guides and HL7 UK's Care Connect ACVPU value set code it
(SNOMED CT, UK edition): the observation `1104441000000107` |ACVPU (Alert Confusion Voice Pain
Unresponsive) scale score|, its answers (`ANSWERS`) from the CareConnect-ACVPU-1 value set. An
answer is read from its SNOMED CT code, else from its letter or its word as charting systems
write it (`A`, `Alert`, `New confusion`, `Voice`…); anything else is not one (ValueError). A
hospital's own code for the observation is read once the code map (schemas.interop.code_map)
maps it to `1104441000000107`.
"""

from __future__ import annotations

from collections.abc import Iterable

OBSERVATION = "1104441000000107"
ANSWERS: dict[str, str] = {
    "248234008": "A",  # Mentally alert
    "130987000": "C",  # Acute confusion
    "300202002": "V",  # Responds to voice
    "450847001": "P",  # Responds to pain
    "422768004": "U",  # Unresponsive
}
WORDS: dict[str, str] = {
    **{w: "A" for w in ("a", "alert", "mentally alert")},
    **{w: "C" for w in ("c", "confusion", "new confusion", "confused", "acute confusion")},
    **{w: "V" for w in ("v", "voice", "responds to voice")},
    **{w: "P" for w in ("p", "pain", "responds to pain")},
    **{w: "U" for w in ("u", "unresponsive")},
}


def names_observation(codes: Iterable[tuple[str, str]]) -> bool:
    """Whether (code, system) pairs name the ACVPU observation: its SNOMED CT code, under any
    system (a local code the deployment mapped to it comes as it, with the local system)."""
    return any(code == OBSERVATION for code, _ in codes)


def letter(codes: Iterable[str], text: str = "") -> str:
    """The ACVPU letter of an answer sent as SNOMED CT codes (`codes`, the first known counts)
    or as a letter or word (`text`); ValueError for neither."""
    for code in codes:
        if code in ANSWERS:
            return ANSWERS[code]
    word = " ".join(text.strip().lower().replace("-", " ").split())
    if word in WORDS:
        return WORDS[word]
    raise ValueError("the answer is no ACVPU level (a SNOMED CT answer, A, C, V, P or U)")
