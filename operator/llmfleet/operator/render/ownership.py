"""Whose object is it: the operator applies only to names its LLMService controls.

Server-side apply with force takes over whatever object has the rendered name; the garbage
collector later deletes it with the LLMService. So before applying, each rendered name is
looked up, and an object that exists without this LLMService as its controller (a user's
own Service, another LLMService's Deployment) is a NameConflict: nothing is applied, the
condition names the objects, and the owner of the name keeps it.

| object with the rendered name        | apply?                     |
| ------------------------------------ | -------------------------- |
| none                                 | yes (created)              |
| controller ownerReference = this uid | yes (ours)                 |
| anything else                        | no: NameConflict           |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class NameConflict(Exception):
    """Rendered names that other owners hold; the message names each."""


def controlled_by(obj: Mapping[str, Any], uid: str | None) -> bool:
    """`obj` has a controller ownerReference to the object with `uid`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(r.get("uid") == uid and r.get("controller") for r in refs)


def foreign_names(existing: Iterable[tuple[str, str, Mapping[str, Any] | None]], uid: str | None) -> list[str]:
    """`Kind name` of each existing object (kind, name, object or None) not controlled by `uid`."""
    out = []
    for kind, name, obj in existing:
        if obj is None or controlled_by(obj, uid):
            continue
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        owner = next((f"{r.get('kind')} {r.get('name')}" for r in refs if r.get("controller")), None)
        out.append(f"{kind} {name} ({'controlled by ' + owner if owner else 'not created by this LLMService'})")
    return out


def conflict_message(names: list[str]) -> str:
    return (f"{', '.join(names)} already exist(s): the operator does not take over objects it did not create; "
            "rename the LLMService or remove the object")


def existing_by_name(
    objects: Mapping[tuple[str, str], Mapping[str, Any] | None],
) -> list[tuple[str, str, Mapping[str, Any] | None]]:
    """{(kind, name): object or None} → the rows foreign_names takes."""
    return [(kind, name, obj) for (kind, name), obj in sorted(objects.items())]


__all__ = ["NameConflict", "conflict_message", "controlled_by", "existing_by_name", "foreign_names"]
