"""The model registry's command line and the versions bundled with wardflow (the registry itself
is `udfs.registry`, which the Flink workers load):

    python -m training.registry list
    python -m training.registry promote sepsis-risk 4      # 4 becomes champion
    python -m training.registry challenger sepsis-risk 5   # 5 is scored in shadow
    python -m training.registry rollback sepsis-risk       # the previous champion returns
    python -m training.registry bootstrap                  # the bundled versions, if empty

Every register, promote, challenger and rollback is an audit event (training/audit.py): in the
registry's audit.jsonl and on Kafka topic model.audit.v1 (`--no-publish`: audit.jsonl only),
with the person who ran it (`--actor`, default user:<login>) and `--why`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from schemas.settings import Settings
from training.audit import AuditTrail, person
from udfs.registry import ROLES, Registry

# Versions shipped with wardflow (trained on PhysioNet 2019 set A by training/train.py), so that
# the demo and the tests score without torch or the data set: champion first, then challenger.
BUNDLED = Path(__file__).resolve().parent / "bundled"


def bootstrap(reg: Registry, model: str, bundled: Path = BUNDLED) -> bool:
    """Register the bundled versions into an empty registry (champion, then challenger)."""
    if reg.versions(model) or not (bundled / model).is_dir():
        return False
    for built, role in zip(sorted((bundled / model).iterdir()), ROLES, strict=False):
        override = (
            (built / "OVERRIDE").read_text().strip() if (built / "OVERRIDE").exists() else None
        )
        v = reg.register(built, override=override)
        reg.set_role(model, role, v.version, why=f"bundled {built.name}")
    return True


HEADLINE = ("auroc", "auprc", "normalised_utility", "event1", "mae_days")


def bundled_models(bundled: Path = BUNDLED) -> list[str]:
    """Every model with bundled versions (the sepsis model first)."""
    names = sorted(p.name for p in bundled.iterdir() if p.is_dir() and not p.name.startswith("_"))
    return sorted(names, key=lambda n: n != "sepsis-risk")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "command", choices=["list", "promote", "challenger", "rollback", "register", "bootstrap"]
    )
    ap.add_argument("model", nargs="?", default=None, help="default: sepsis-risk (bootstrap: all)")
    ap.add_argument("version_or_path", nargs="?")
    ap.add_argument("--override", default=None, help="register despite a failed gate: why")
    ap.add_argument("--actor", default=None, help="who runs this (default: user:<login>)")
    ap.add_argument("--why", default="", help="the reason, for the audit trail")
    ap.add_argument("--no-publish", action="store_true", help="audit to audit.jsonl only")
    ap.add_argument("--topic-prefix", default="", help="of model.audit.v1 (isolated runs)")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    reg = Registry(settings.model_registry)
    trail = AuditTrail(
        reg,
        a.actor or person(),
        None if a.no_publish else settings,
        topic_prefix=a.topic_prefix,
    )
    if a.command == "bootstrap":
        for name in [a.model] if a.model else bundled_models():
            done = bootstrap(reg, name)
            print(f"{name}: " + ("bootstrapped" if done else "registry not empty: unchanged"))
        return
    a.model = a.model or "sepsis-risk"
    before = reg.roles(a.model)

    def audit(step: str, version: str, action: str, default_why: str, **evidence: Any) -> None:
        roles = {"before": before, "after": reg.roles(a.model)}
        trail.record(
            a.model, step, version=version, action=action, reason=a.why or default_why,
            evidence={**roles, **evidence},
        )  # fmt: skip

    if a.command == "register":
        v = reg.register(Path(a.version_or_path), override=a.override)
        print(f"registered {v.model} {v.version}")
        why = f"override: {a.override}" if a.override else "gate passed"
        audit("registered", v.version, f"registered {a.version_or_path}", why, gate=v.spec["gate"])
    elif a.command == "promote":
        reg.promote(a.model, a.version_or_path)
        made = f"made {a.version_or_path} champion by command"
        audit("promoted", a.version_or_path, made, "promote command")
    elif a.command == "challenger":
        reg.set_role(a.model, "challenger", a.version_or_path, why=a.why or "challenger")
        made = f"made {a.version_or_path} challenger (shadow) by command"
        audit("challenger_set", a.version_or_path, made, "challenger command")
    elif a.command == "rollback":
        restored = reg.rollback(a.model)
        print(f"champion is {restored} again")
        made = f"rolled the champion back from {before.get('champion')} to {restored}"
        audit("rollback", restored, made, "rollback command")
    roles = reg.roles(a.model)
    for number in reg.versions(a.model):
        s = reg.get(a.model, number).spec
        role = next((r for r, rv in roles.items() if rv == number), "")
        m = s["metrics"]
        shown = " ".join(f"{k} {m[k]:.3f}" for k in HEADLINE if isinstance(m.get(k), int | float))
        threshold = "" if s.get("threshold") is None else f" threshold {s['threshold']:.3f}"
        print(f"{a.model} {number:>3} {role:<10} {shown}{threshold}")


if __name__ == "__main__":
    main()
