"""Print (and create) a collections directory in which this checkout is gpuops.llm.

Ansible and pytest import the collection as ``ansible_collections.gpuops.llm``. Rather than
copy the tree, we keep a symlink outside the repository (keyed by the checkout's path, so two
clones never point at each other) and put its parent on ANSIBLE_COLLECTIONS_PATH/sys.path.
"""
import hashlib
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def ensure() -> pathlib.Path:
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    base = cache / "gpuops-llm" / f"collections-{key}"
    link = base / "ansible_collections" / "gpuops" / "llm"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and link.resolve() == ROOT):
        # Build the link beside it and rename over: atomic, so parallel test workers never race.
        tmp = link.with_name(f".llm-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(ROOT, target_is_directory=True)
        os.replace(tmp, link)
    return base


if __name__ == "__main__":
    sys.stdout.write(f"{ensure()}\n")
