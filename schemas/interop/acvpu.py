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


def level(text: str) -> str | None:
    """The letter a text names (`Alert`, `new confusion`, `V`…; an answer's SNOMED CT fully
    specified name too, its semantic tag after it: `Mentally alert (finding)`), or None."""
    words = " ".join(text.strip().lower().replace("-", " ").split())
    return WORDS.get(words.removesuffix(" (finding)"))


def letter(codes: Iterable[str], texts: Iterable[str] = ()) -> str:
    """The ACVPU letter of one answer: every SNOMED CT code of it (`codes`; others are not
    levels) and every text (`texts`: a value, a code's display, a concept's text; one that is no
    level is not read) must name the same level, and one must name it. ValueError for none, or
    for parts that name different levels (`248234008` |Mentally alert| with the text "New
    confusion": a nurse's record is never read as the milder of two)."""
    found = {ANSWERS[c] for c in codes if c in ANSWERS}
    found |= {lv for t in texts if (lv := level(t)) is not None}
    if len(found) > 1:
        raise ValueError(f"the answer names more than one ACVPU level ({', '.join(sorted(found))})")
    if not found:
        raise ValueError("the answer is no ACVPU level (a SNOMED CT answer, A, C, V, P or U)")
    return found.pop()
