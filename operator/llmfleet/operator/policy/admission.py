"""The admin's allow-lists for LLMServices: host paths, images, priority classes, toleration keys.

An LLMService author chooses what its pods mount and where they run. On a shared cluster a
`file:///` URI (a hostPath on whatever node the pod lands), a free-form image, a toleration
of every taint and a high PriorityClass are the cluster admin's to grant, not the tenant's.

| rule (chart value, operator flag)                               | unset / empty means      |
| --------------------------------------------------------------- | ------------------------ |
| admission.allowedHostPaths, --allowed-host-path                 | no `file://` URI at all  |
| admission.allowedImagePrefixes, --allowed-image-prefix          | any spec.engine.image    |
| admission.allowedPriorityClasses, --allowed-priority-class      | any priorityClassName    |
| admission.allowedTolerationKeys, --allowed-toleration-key       | any toleration           |

A host path is allowed when it is one of the prefixes or lies below one, compared by whole
path components (`/models` allows `/models/a`, not `/models-x`), with no `.` or `..` component
and written normally (no `//`, no trailing `/`).
A toleration with no key (it tolerates every taint) needs `""` in the list. The default image
(the operator's own) is always allowed. The chart ships the same rules as a
ValidatingAdmissionPolicy, so the API server refuses such a spec before the operator sees it;
this check is the operator's own guard (a cluster without the policy, an object created
before the rules changed).
"""

from __future__ import annotations

from dataclasses import dataclass

from llmfleet.operator.api.llmservice import LLMServiceSpec


@dataclass(frozen=True)
class AdmissionRules:
    host_path_prefixes: tuple[str, ...] = ()  # empty: no file:// URI
    image_prefixes: tuple[str, ...] = ()  # empty: any image
    priority_classes: tuple[str, ...] = ()  # empty: any
    toleration_keys: tuple[str, ...] = ()  # empty: any

    @classmethod
    def allow_all_host_paths(cls) -> AdmissionRules:
        """For development: every host path (the prefix `/`)."""
        return cls(host_path_prefixes=("/",))


@dataclass(frozen=True)
class Violation:
    field: str  # the spec field as users write it, e.g. spec.model.uri
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def host_path_allowed(path: str, prefixes: tuple[str, ...]) -> bool:
    """`path` equals a prefix or lies below one, by whole components, without `.` or `..`.

    Only a normalized path is compared: no empty component and no trailing `/`. `//proc` is the
    node's /proc (the hostPath and the mount both resolve it), but no rule spelled `/proc`
    matches it, the CRD's own included; `/tmp/` is a second mount at the pod's /tmp."""
    if not path.startswith("/") or any(part in (".", "..") for part in path.split("/")):
        return False
    if "//" in path or (path != "/" and path.endswith("/")):
        return False
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if path == prefix or path == base or path.startswith(base + "/"):
            return True
    return False


def check_service(spec: LLMServiceSpec, rules: AdmissionRules) -> list[Violation]:
    """Every field of `spec` outside the admin's rules (empty: allowed)."""
    out: list[Violation] = []
    uri = spec.model.uri
    if uri.startswith("file://"):
        path = uri.removeprefix("file://")
        if not host_path_allowed(path, rules.host_path_prefixes):
            allowed = ", ".join(rules.host_path_prefixes) or "none"
            out.append(Violation("spec.model.uri", f"host path {path} is not allowed on this cluster "
                                                   f"(allowed host paths: {allowed})"))
    image = spec.engine.image
    if image is not None and rules.image_prefixes and not any(image.startswith(p) for p in rules.image_prefixes):
        out.append(Violation("spec.engine.image", f"image {image} is not allowed on this cluster "
                                                  f"(allowed prefixes: {', '.join(rules.image_prefixes)})"))
    priority = spec.scheduling.priority_class_name
    if priority is not None and rules.priority_classes and priority not in rules.priority_classes:
        out.append(Violation("spec.scheduling.priorityClassName",
                             f"PriorityClass {priority} is not allowed on this cluster "
                             f"(allowed: {', '.join(rules.priority_classes)})"))
    if rules.toleration_keys:
        for i, toleration in enumerate(spec.scheduling.tolerations):
            key = toleration.key or ""
            if key not in rules.toleration_keys:
                what = f"key {key}" if key else "no key (it tolerates every taint)"
                out.append(Violation(f"spec.scheduling.tolerations[{i}].key",
                                     f"a toleration with {what} is not allowed on this cluster "
                                     f"(allowed keys: {', '.join(repr(k) for k in rules.toleration_keys)})"))
    return out
