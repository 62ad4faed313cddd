"""Stand-in for the get-pip bootstrap script that ansible-test downloads from a site we cannot reach.

ansible-test runs it inside each fresh sanity venv with pip's install arguments. We bootstrap
pip from the interpreter's bundled ensurepip wheel instead, then let pip install from PyPI.
"""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null for its own run
# ansible-test runs this with a trimmed environment; keep the machine's CA bundle (TLS-intercepting
# proxies) for this venv's later pip runs too.
for bundle in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
    if bundle and os.path.exists(bundle):
        with open(os.path.join(sys.prefix, "pip.conf"), "w", encoding="utf-8") as f:
            f.write(f"[global]\ncert = {bundle}\n")
        break
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
