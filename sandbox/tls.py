"""A local certificate authority for the https stand-ins.

MSAL refuses http authorities, so the identity stand-in must speak https; the simplest consistent
setup is https everywhere with one CA that the jobs trust through ``REQUESTS_CA_BUNDLE``. The CA is
created once per state dir and kept, so the bundle path stays valid across restarts.
"""

from __future__ import annotations

import ssl
from pathlib import Path

CA_FILE = "ca.pem"
SERVER_FILE = "server.pem"  # private key + certificate chain


def ensure_certificates(state_dir: Path) -> Path:
    """Create ``ca.pem`` and ``server.pem`` (127.0.0.1 and localhost) unless they exist; return the CA path."""
    ca_path, server_path = state_dir / CA_FILE, state_dir / SERVER_FILE
    if ca_path.exists() and server_path.exists():
        return ca_path
    import trustme

    ca = trustme.CA(organization_name="QBO Invoice Processor sandbox")
    leaf = ca.issue_cert("127.0.0.1", "localhost", common_name="127.0.0.1")
    state_dir.mkdir(parents=True, exist_ok=True)
    leaf.private_key_and_cert_chain_pem.write_to_path(str(server_path))
    server_path.chmod(0o600)
    ca.cert_pem.write_to_path(str(ca_path))
    return ca_path


def server_context(state_dir: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(state_dir / SERVER_FILE))
    return context
