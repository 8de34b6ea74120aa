"""Let Endpoints and EndpointSlices carry loopback IPs: the bed's one change to upstream.

The test bed reports a distinct 127.0.0.X address as each pod's IP (no network
namespaces here). Upstream validation (ValidateEndpointIP in
pkg/apis/core/validation) rejects loopback endpoint addresses, so the controller
manager could never fill an EndpointSlice. This rewrites, in build.sh's private
hard-linked copy of the module, exactly that one `if` and nothing else; it fails
loudly if the upstream text changed rather than build a silently different server.

Usage: allow_loopback_endpoints.py <path of pkg/apis/core/validation/validation.go>
"""

import re
import sys
from pathlib import Path


def main(path: str) -> None:
    source = Path(path)
    text = source.read_text()
    func_at = text.index("func ValidateEndpointIP(")
    body_end = text.index("\n}\n", func_at)
    check = re.compile(r"\n\tif ip\.IsLoopback\(\) \{\n[^\n]*loopback range[^\n]*\n\t\}\n")
    patched_body, count = check.subn("\n", text[func_at:body_end])
    if count != 1:
        sys.exit(
            f"allow_loopback_endpoints: expected one loopback check in ValidateEndpointIP of {source}, found {count}"
        )
    # The file is a hard link into the module cache: write a new file, never through the link.
    source.unlink()
    source.write_text(text[:func_at] + patched_body + text[body_end:])
    print(f"allow_loopback_endpoints: loopback endpoint addresses allowed in {source}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
