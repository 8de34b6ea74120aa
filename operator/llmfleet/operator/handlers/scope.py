"""What the served namespaces mean for kopf's cluster scanning.

kopf observes the cluster's setup in two background tasks (kopf/_core/reactor/observation.py):
the namespace observer lists and watches Namespaces, to expand the `--namespace` patterns,
and the resource observer watches CRDs, to notice resources added or changed after start.
`settings.scanning.disabled` turns off both watches (and the Namespace list).

With exact names and no right to list Namespaces (the chart's `operator.watchNamespaces`
grants none), the scan can only fail: kopf retries the list 9 times over ~54 s with one
ERROR line each, serves *nothing* until it falls back to the exact names, then does the
same for the watch (bed: 18 ERROR lines, the first LLMService resumed 54 s after start).
With exact names the scan would add nothing anyway: the fallback is exactly those names.

| operator serves                          | scanning | why |
| ---------------------------------------- | -------- | --- |
| all namespaces (no `--namespace`)        | on (kopf's default) | kopf lists no Namespaces cluster-wide; the CRD watch picks up CRDs created or changed later |
| exact names only (`-n team-a -n team-b`) | off      | nothing to expand; serves at once, no 403s; CRDs are found once at start (the chart installs them first) |
| a glob or negation (`team-*`, `!kube-system`) | on  | kopf can expand it only by listing and watching Namespaces (rights the chart does not grant) |

Events about cluster-scoped objects (a SpotPool's `SpotInterrupted`, drain milestones) go
to the login's default namespace; kopf's login through the kubernetes client has none, so
they went to `default`. With `--namespace` the chart grants `events` create only in the
watched namespaces and the operator's own (`$POD_NAMESPACE`, the `<release>-events` Role):
the POST to `default` failed with 9 ERROR lines over ~54 s per event, and the event was
lost. So, with `--namespace`, they go to `$POD_NAMESPACE`; cluster-wide nothing changes
(`default`, allowed by the ClusterRoleBinding).
"""

from __future__ import annotations

from collections.abc import Sequence

# kopf's namespace pattern syntax (kopf._cogs.structs.references.select_specific_namespaces):
# a pattern holding one of these is a glob, a negation or a list, not a namespace name.
PATTERN_CHARS = frozenset("!*?,")


def is_exact_namespace(pattern: str) -> bool:
    """A namespace name as kopf takes it, not a pattern it must expand by listing Namespaces."""
    return bool(pattern) and not PATTERN_CHARS.intersection(pattern)


def scanning_disabled(namespaces: Sequence[str]) -> bool:
    """kopf's `settings.scanning.disabled` for the served namespaces (empty: all of them):
    True exactly when every one is an exact name."""
    return bool(namespaces) and all(is_exact_namespace(ns) for ns in namespaces)


def cluster_events_namespace(namespaces: Sequence[str], pod_namespace: str | None) -> str | None:
    """Where kopf posts Events about cluster-scoped objects: the operator's own namespace when
    it serves listed namespaces and knows its own; None: kopf's choice (`default`)."""
    return (pod_namespace or None) if namespaces else None
