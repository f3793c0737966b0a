"""IEEE 11073-10101 (MDC) nomenclature codes that bedside monitors and their gateways send: IHE
PCD-01 ORU^R01 (IHE Patient Care Device Technical Framework, vol. 2: OBX-3 and OBX-6 are MDC
triplets `150456^MDC_PULS_OXIM_SAT_O2^MDC`) and FHIR Observations coded in
`urn:iso:std:iso:11073:10101`. Each vital sign code maps onto the LOINC code wardflow already
reads (schemas.interop.loinc), so its field, units and conversion come from one table; each MDC
unit onto its UCUM code.

A term is sent as its context-free code, partition × 65,536 + term code (partition 2, SCADA, for
the measurements; 4, dimensions, for the units), in OBX-3.1 and OBX-6.1, beside its reference
id, the mnemonic (`MDC_ECG_HEART_RATE`). The code is what is read; the mnemonic only where the
code is missing or not one of these (gateways have sent a wrong code beside the right
mnemonic). Site-unspecified invasive pressures (MDC_PRESS_BLD_SYS…, a monitor's numbered IBP
channels, which may be a pulmonary artery or a central venous line) are not read as blood
pressure. Philips monitors' data export writes the same code as hexadecimal partition-term in
its own coding system `MDIL` (`0002-4182^HR^MDIL` is 2 × 65,536 + 0x4182 = 147842, the ECG's heart
rate; `0004-0aa0` is 264864, beats per minute): read as that code (`context_free`).

Several codes measure one vital sign (the ECG's heart rate and the oximeter's pulse rate; the
arterial line's and the cuff's pressure). Where one reading carries more than one, the lowest
`rank` is kept: the ECG before the oximeter before the cuff's pulse; the arterial line, which
monitors the pressure continuously, before an intermittent cuff; a capnograph's breathing rate,
then the monitor's, then the chest impedance's, then one derived from the plethysmogram; a
body or core temperature, then one at a named site, then the monitor's unnamed probe (which may
be a skin probe).
"""

from __future__ import annotations

from typing import NamedTuple

SYSTEM_FHIR = "urn:iso:std:iso:11073:10101"
SYSTEM_HL7 = "MDC"
SYSTEMS_HL7 = frozenset({SYSTEM_HL7, "MDIL"})  # MDIL: Philips' hexadecimal partition-term


def context_free(code: str) -> int | None:
    """An MDC code as its context-free number: decimal as sent, or Philips' hexadecimal
    `PPPP-TTTT` (partition, term code); None for anything else."""
    code = code.strip()
    if code.isdigit():
        return int(code)
    partition, dash, term_code = code.partition("-")
    if dash and len(partition) == 4 and len(term_code) == 4:
        try:
            return int(partition, 16) * 65536 + int(term_code, 16)
        except ValueError:
            return None
    return None


class Term(NamedTuple):
    mnemonic: str
    loinc: str  # the LOINC code of the same vital sign (schemas.interop.loinc.CODES)
    rank: int  # lower: preferred where one reading has several codes for one field


VITAL_SIGNS: dict[int, Term] = {
    147842: Term("MDC_ECG_HEART_RATE", "8867-4", 0),
    149530: Term("MDC_PULS_OXIM_PULS_RATE", "8867-4", 1),
    149546: Term("MDC_PULS_RATE_NON_INV", "8867-4", 2),
    150456: Term("MDC_PULS_OXIM_SAT_O2", "59408-5", 0),
    152196: Term("MDC_CONC_AWAY_O2_INSP", "3150-0", 0),  # a ventilator's inspired O2 (FiO2)
    151594: Term("MDC_CO2_RESP_RATE", "9279-1", 0),
    151562: Term("MDC_RESP_RATE", "9279-1", 1),
    151578: Term("MDC_TTHOR_RESP_RATE", "9279-1", 2),
    151658: Term("MDC_PULS_OXIM_PLETH_RESP_RATE", "9279-1", 3),
    150364: Term("MDC_TEMP_BODY", "8310-5", 0),
    150368: Term("MDC_TEMP_CORE", "8310-5", 0),
    188420: Term("MDC_TEMP_RECT", "8310-5", 1),
    150392: Term("MDC_TEMP_TYMP", "8310-5", 1),
    188424: Term("MDC_TEMP_ORAL", "8310-5", 1),
    150344: Term("MDC_TEMP", "8310-5", 2),
    150037: Term("MDC_PRESS_BLD_ART_ABP_SYS", "8480-6", 0),
    150038: Term("MDC_PRESS_BLD_ART_ABP_DIA", "8462-4", 0),
    150039: Term("MDC_PRESS_BLD_ART_ABP_MEAN", "8478-0", 0),
    150033: Term("MDC_PRESS_BLD_ART_SYS", "8480-6", 1),
    150034: Term("MDC_PRESS_BLD_ART_DIA", "8462-4", 1),
    150035: Term("MDC_PRESS_BLD_ART_MEAN", "8478-0", 1),
    150021: Term("MDC_PRESS_BLD_NONINV_SYS", "8480-6", 3),
    150022: Term("MDC_PRESS_BLD_NONINV_DIA", "8462-4", 3),
    150023: Term("MDC_PRESS_BLD_NONINV_MEAN", "8478-0", 3),
    150301: Term("MDC_PRESS_CUFF_SYS", "8480-6", 3),
    150302: Term("MDC_PRESS_CUFF_DIA", "8462-4", 3),
    150303: Term("MDC_PRESS_CUFF_MEAN", "8478-0", 3),
}
_BY_MNEMONIC = {t.mnemonic: code for code, t in VITAL_SIGNS.items()}
# Blood pressure groups whose systolic, diastolic and mean are their parts (a PCD-01 OBX-4
# hierarchy's channel, a FHIR Observation's components): LOINC's blood pressure panel.
PANELS: dict[str, str] = {
    str(code): "85354-9"
    for code in (150020, 150032, 150036, 150300)  # NONINV, ART, ART_ABP, CUFF
}

# MDC dimension (partition 4) → UCUM. A rate's dimension says which rate it is (UCUM's
# annotation): a beat's only on a heart or pulse rate, a breath's only on a respiratory rate
# (loinc._other_rate: the other is a channel sent under the wrong code).
UNITS: dict[int, tuple[str, str]] = {
    262688: ("MDC_DIM_PERCENT", "%"),
    264864: ("MDC_DIM_BEAT_PER_MIN", "{beats}/min"),
    264928: ("MDC_DIM_RESP_PER_MIN", "{breaths}/min"),
    266016: ("MDC_DIM_MMHG", "mm[Hg]"),
    266560: ("MDC_DIM_FAHR", "[degF]"),
    268192: ("MDC_DIM_DEGC", "Cel"),
}
_UNIT_BY_MNEMONIC = {m: ucum for m, ucum in UNITS.values()}


def term(code: str, mnemonic: str = "") -> tuple[int, Term] | None:
    """The vital sign an MDC term names: by its code, else by its mnemonic."""
    number = context_free(code)
    if number is not None and number in VITAL_SIGNS:
        return number, VITAL_SIGNS[number]
    known = _BY_MNEMONIC.get(mnemonic) or _BY_MNEMONIC.get(code)
    return (known, VITAL_SIGNS[known]) if known is not None else None


def ucum(code: str, mnemonic: str = "") -> str | None:
    """The UCUM code of an MDC unit: by its code, else by its mnemonic."""
    number = context_free(code)
    if number is not None and number in UNITS:
        return UNITS[number][1]
    return _UNIT_BY_MNEMONIC.get(mnemonic) or _UNIT_BY_MNEMONIC.get(code)
