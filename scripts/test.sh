#!/usr/bin/env bash
# Run every test tier: unit, integration on the local testbed, the molecule scenario, ansible-lint,
# ansible-test sanity, the collection build + install check and galaxy-importer. Exits non-zero if any tier fails.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh || exit 1
export PATH=$PWD/.venv/bin:$PATH
COLL=$(python scripts/collection_path.py)
export ANSIBLE_COLLECTIONS_PATH=$COLL
rc=0
step() { echo; echo "=== $*"; }

step "unit (pytest, 2 workers)"
python -m pytest -p no:cacheprovider -n 2 tests/unit || rc=1

step "integration on the testbed (pytest, serial: the tests share one cluster)"
python -m pytest -p no:cacheprovider tests/integration || rc=1

step "molecule (own testbed: create, converge site.yml, idempotence, verify with the audit, destroy)"
MOLECULE_HOME=$(mktemp -d /tmp/gpuops-molecule.XXXXXX)
GPUOPS_TESTBED_HOME=$MOLECULE_HOME molecule test || rc=1
rm -rf "$MOLECULE_HOME"

step "collection build + install"
bash tests/sanity/build_install.sh || rc=1

step "galaxy-importer (Galaxy's own import checks on the built tarball; own venv under .cache/)"
bash tests/sanity/galaxy_importer.sh || rc=1

step "ansible-lint (production profile)"
ansible-lint --profile production || rc=1

step "ansible-test sanity"
bash tests/sanity/ansible_test_sanity.sh || rc=1

echo
if [[ $rc -eq 0 ]]; then echo "ALL TIERS PASSED"; else echo "SOME TIERS FAILED"; fi
exit $rc
