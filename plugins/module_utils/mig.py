# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MIG knowledge without hardware: profile tables, layout validation, a placement solver,
mig-parted config parsing, named presets, and the minimal diff between two layouts.

Pure Python: no Ansible, no pynvml. At run time NVML is the truth for profile names, IDs and
placements (nvml.py reads them); these static tables serve the simulator and planning only.
Every value comes from /work/shared/facts/mig-and-nvml.md; values the facts mark as inferred
or unconfirmed are listed in each entry's ``unconfirmed`` field and flagged with a comment.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------------------------
# NVML constants (facts §0.1, §3). Same values as nvml.h and pynvml.
# ---------------------------------------------------------------------------------------------
GI_PROFILE_1_SLICE = 0
GI_PROFILE_2_SLICE = 1
GI_PROFILE_3_SLICE = 2
GI_PROFILE_4_SLICE = 3
GI_PROFILE_7_SLICE = 4
GI_PROFILE_8_SLICE = 5
GI_PROFILE_6_SLICE = 6
GI_PROFILE_1_SLICE_REV1 = 7   # +me
GI_PROFILE_2_SLICE_REV1 = 8   # +me
GI_PROFILE_1_SLICE_REV2 = 9   # double memory
GI_PROFILE_COUNT = 0x12

# Compute-instance profile index by compute-slice count (facts §1, "Compute-instance profiles").
CI_PROFILE_BY_SLICES = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4, 8: 5, 6: 6}
CI_PROFILE_COUNT = 9

RESOURCE_PREFIX = "nvidia.com/mig-"

# Ng.Mgb or Cc.Ng.Mgb with an optional +me, +me.all, +gfx or -me suffix (facts §4, [nvlib]).
PROFILE_RE = re.compile(r"^(?:(?P<c>[1-9]\d*)c\.)?(?P<g>[1-9]\d*)g\.(?P<gb>[1-9]\d*)gb(?P<suffix>\+me\.all|\+me|\+gfx|-me)?$")


class MigError(ValueError):
    """A layout or configuration that cannot exist. ``reason`` is a short machine-readable tag
    (unknown_profile, over_count, media_engines, no_room, not_mig_capable, driver, syntax,
    unknown_gpu, unsupported, config); ``profile`` names the profile at fault when there is one."""

    def __init__(self, message: str, reason: str = "invalid", profile: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.profile = profile


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    name: str                 # e.g. "1g.10gb", "1g.10gb+me"
    index: int                # NVML_GPU_INSTANCE_PROFILE_* (passed only to GetGpuInstanceProfileInfo)
    id: int                   # info.id, what nvidia-smi prints and Create/Placements take
    instance_count: int
    multiprocessors: int
    memory_mib: int
    slices: int               # compute slices ("g"); sliceCount in NVML's profile info
    size: int                 # memory slices a placement covers
    starts: tuple             # legal placement starts, in memory slices
    engines: dict = field(default_factory=dict)  # copy, decoder, encoder, jpeg, ofa
    min_driver: str | None = None
    unconfirmed: tuple = ()   # names of fields the facts do not confirm

    @property
    def media_extension(self) -> bool:
        return self.name.endswith("+me")

    @property
    def resource(self) -> str:
        return resource_name(self.name)

    def placements(self) -> list[dict]:
        return [{"start": s, "size": self.size} for s in self.starts]

    def as_dict(self) -> dict:
        return {
            "name": self.name, "index": self.index, "id": self.id, "instance_count": self.instance_count,
            "multiprocessors": self.multiprocessors, "memory_mib": self.memory_mib, "slices": self.slices,
            "placement_size": self.size, "placement_starts": list(self.starts), "engines": dict(self.engines),
            "resource": self.resource, "unconfirmed": list(self.unconfirmed),
        }


@dataclass(frozen=True)
class GpuModel:
    key: str                  # canonical name, the GFD product without the "NVIDIA-" prefix
    nvml_names: tuple         # nvmlDeviceGetName values (first one is what the simulator reports)
    pci_ids: tuple            # pciDeviceId as mig-parted's device-filter writes it, "0x20B010DE"
    memory_mib: int           # total framebuffer as NVML reports it
    generation: str           # ampere / hopper / blackwell / ada
    profiles: tuple = ()      # empty: no MIG
    memory_slices: int = 0
    compute_slices: int = 0
    min_driver: str | None = None
    unconfirmed: tuple = ()

    @property
    def mig_capable(self) -> bool:
        return bool(self.profiles)

    @property
    def mig_mode_needs_reset(self) -> bool:
        # Facts §0.4: on Ampere the mode change is applied by a GPU reset; Hopper+ apply it at once.
        return self.generation == "ampere"

    def profile(self, name: str) -> Profile | None:
        for p in self.profiles:
            if p.name == name:
                return p
        return None

    def profile_by_id(self, pid: int) -> Profile | None:
        for p in self.profiles:
            if p.id == pid:
                return p
        return None

    def profile_by_index(self, idx: int) -> Profile | None:
        for p in self.profiles:
            if p.index == idx:
                return p
        return None

    @property
    def profile_names(self) -> list[str]:
        return [p.name for p in self.profiles]


def _engines(dec, enc, ce, jpeg, ofa):
    return {"copy": ce, "decoder": dec, "encoder": enc, "jpeg": jpeg, "ofa": ofa}


# Placements shared by every 8-memory-slice GPU here (facts §2): identical on A100-40GB, A100-80GB
# and H100-80GB; H100 NVL per [cap-NVL]; H200 and B200 presumed identical (⚑).
_P1 = (0, 1, 2, 3, 4, 5, 6)
_P1_REV2 = (0, 2, 4, 6)
_P2 = (0, 2, 4)
_P3 = (0, 4)
_P4 = (0,)
_P7 = (0,)


def _seven_slice(names, sms, mems, engines, unconfirmed=None, min_driver=None):
    """Build the 7 standard profiles of an 8-memory-slice GPU.

    names/sms/mems/engines are 7-tuples in the order 1g, 1g+me, 1g REV2, 2g, 3g, 4g, 7g.
    The (index, id) pairs are the A100/H100 ones from facts §1 (ids from nvidia-smi captures).
    """
    layout = [  # (index, id, count, slices, size, starts)
        (GI_PROFILE_1_SLICE, 19, 7, 1, 1, _P1),
        (GI_PROFILE_1_SLICE_REV1, 20, 1, 1, 1, _P1),
        (GI_PROFILE_1_SLICE_REV2, 15, 4, 1, 2, _P1_REV2),
        (GI_PROFILE_2_SLICE, 14, 3, 2, 2, _P2),
        (GI_PROFILE_3_SLICE, 9, 2, 3, 4, _P3),
        (GI_PROFILE_4_SLICE, 5, 1, 4, 4, _P4),
        (GI_PROFILE_7_SLICE, 0, 1, 7, 8, _P7),
    ]
    unconfirmed = unconfirmed or {}
    min_driver = min_driver or {}
    out = []
    for i, (idx, pid, n, g, size, starts) in enumerate(layout):
        out.append(Profile(
            name=names[i], index=idx, id=pid, instance_count=n, multiprocessors=sms[i], memory_mib=mems[i],
            slices=g, size=size, starts=starts, engines=engines[i],
            min_driver=min_driver.get(names[i]), unconfirmed=tuple(unconfirmed.get(names[i], ())),
        ))
    return tuple(out)


def _all(fields, names):
    return {n: tuple(fields) for n in names}


# --- A100-SXM4-40GB (also the PCIe 40GB card) [UG-start]; MiB equal to [mock] ---------------------
_A100_40_NAMES = ("1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb")
_A100_ENGINES = (
    _engines(0, 0, 1, 0, 0), _engines(1, 0, 1, 1, 1), _engines(1, 0, 1, 0, 0), _engines(1, 0, 2, 0, 0),
    _engines(2, 0, 3, 0, 0), _engines(2, 0, 4, 0, 0), _engines(5, 0, 7, 1, 1),
)
A100_SXM4_40GB = GpuModel(
    key="A100-SXM4-40GB",
    nvml_names=("NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"),
    # mig-parted groups these device IDs (incl. A800-40GB) under the same profiles (facts §4).
    pci_ids=("0x20B010DE", "0x20B110DE", "0x20F110DE", "0x20F610DE"),
    memory_mib=40960,  # ⚑ total not in the facts; 40 GiB is consistent with nvlib's naming rule
    generation="ampere",
    memory_slices=8, compute_slices=7,
    profiles=_seven_slice(
        _A100_40_NAMES,
        sms=(14, 14, 14, 28, 42, 56, 98),
        mems=(4864, 4864, 9856, 9856, 19968, 19968, 40192),
        engines=_A100_ENGINES,
        # 1g.10gb needs R525+, +me R470+ [UG-prof]; 4g+3g together needs R510+ (checked separately).
        min_driver={"1g.5gb+me": "470", "1g.10gb": "525"},
    ),
    unconfirmed=("memory_mib",),
)

# --- A100-SXM4-80GB / A100-PCIe-80GB: counts, SMs, engines, placements as 40GB [mock]; MiB ⚑ mock only
A100_SXM4_80GB = GpuModel(
    key="A100-SXM4-80GB",
    nvml_names=("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-80GB"),  # ⚑ PCIe names
    pci_ids=("0x20B210DE", "0x20B510DE", "0x20F310DE", "0x20F510DE"),
    memory_mib=81920,  # ⚑
    generation="ampere",
    memory_slices=8, compute_slices=7,
    profiles=_seven_slice(
        ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
        sms=(14, 14, 14, 28, 42, 56, 98),
        mems=(9856, 9856, 19968, 19968, 40192, 40192, 80384),
        engines=_A100_ENGINES,
        unconfirmed=_all(("memory_mib",), ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb")),
    ),
    unconfirmed=("memory_mib", "nvml_names"),
)

# --- A30-24GB [cap-A30]; index values of [mock]; 4 memory slices -------------------------------------
A30 = GpuModel(
    key="A30",
    nvml_names=("NVIDIA A30",),
    pci_ids=("0x20B710DE",),
    memory_mib=24576,  # ⚑
    generation="ampere",
    memory_slices=4, compute_slices=4,
    profiles=(
        # ⚑ MiB derived from nvidia-smi GiB (5.81, 11.69, 23.44); engines not in the facts.
        Profile("1g.6gb", GI_PROFILE_1_SLICE, 14, 4, 14, 5952, 1, 1, (0, 1, 2, 3), _engines(0, 0, 1, 0, 0),
                unconfirmed=("memory_mib", "engines")),
        Profile("1g.6gb+me", GI_PROFILE_1_SLICE_REV1, 21, 1, 14, 5952, 1, 1, (0, 1, 2, 3), _engines(1, 0, 1, 1, 1),
                unconfirmed=("memory_mib", "engines")),
        Profile("2g.12gb", GI_PROFILE_2_SLICE, 5, 2, 28, 11968, 2, 2, (0, 2), _engines(2, 0, 2, 0, 0),
                unconfirmed=("memory_mib", "engines")),
        Profile("2g.12gb+me", GI_PROFILE_2_SLICE_REV1, 6, 1, 28, 11968, 2, 2, (0, 2), _engines(2, 0, 2, 1, 1),
                min_driver="525", unconfirmed=("memory_mib", "engines")),
        Profile("4g.24gb", GI_PROFILE_4_SLICE, 0, 1, 56, 24000, 4, 4, (0,), _engines(4, 0, 4, 1, 1),
                unconfirmed=("memory_mib", "engines")),
    ),
    unconfirmed=("memory_mib",),
)

# --- H100 80GB HBM3 (SXM5; the guide says PCIe has the same profiles) [cap-H100] ---------------------
_H100_ENGINES = (
    _engines(1, 0, 1, 1, 0), _engines(1, 0, 1, 1, 1), _engines(1, 0, 1, 1, 0), _engines(2, 0, 2, 2, 0),
    _engines(3, 0, 3, 3, 0), _engines(4, 0, 4, 4, 0), _engines(7, 0, 8, 7, 1),
)
_H100_NAMES = ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb")
H100_80GB_HBM3 = GpuModel(
    key="H100-80GB-HBM3",
    # ⚑ "NVIDIA H100 PCIe": fewer SMs than SXM5, so its per-profile SM counts are unconfirmed.
    nvml_names=("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe"),
    pci_ids=("0x233010DE", "0x233110DE", "0x232210DE", "0x232410DE"),
    memory_mib=81559,  # ⚑ total not in the facts; consistent with nvlib's naming rule
    generation="hopper",
    memory_slices=8, compute_slices=7,
    profiles=_seven_slice(
        _H100_NAMES,
        sms=(16, 16, 26, 32, 60, 64, 132),
        # 9.75 / 19.62 / 39.50 (40448, confirmed by the guide's MPS example) / 79.25 GiB
        mems=(9984, 9984, 20096, 20096, 40448, 40448, 81152),
        engines=_H100_ENGINES,
        unconfirmed=_all(("memory_mib",), ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "7g.80gb")),
    ),
    unconfirmed=("memory_mib", "multiprocessors on H100 PCIe"),
)

# --- H100 NVL 94GB: names/counts [UG-prof]; IDs, SMs, GiB [cap-NVL]; placements as H100 ---------------
H100_NVL = GpuModel(
    key="H100-NVL",
    nvml_names=("NVIDIA H100 NVL",),
    pci_ids=("0x232110DE", "0x233A10DE"),
    memory_mib=95830,  # ⚑
    generation="hopper",
    memory_slices=8, compute_slices=7,
    profiles=_seven_slice(
        ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
        sms=(16, 16, 26, 32, 60, 64, 132),
        mems=(11008, 11008, 22144, 22144, 47488, 47488, 95360),  # from nvidia-smi GiB ×1024
        engines=_H100_ENGINES,
        unconfirmed=_all(("memory_mib", "engines"), ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb")),
    ),
    unconfirmed=("memory_mib",),
)

# --- H200 141GB: names, fractions, CE, counts [UG-prof]. ⚑ no real -lgip capture: IDs and placements
# presumed the H100's; SMs 16/32/132 from one test fixture, the rest by analogy with H100; MiB chosen to
# satisfy nvlib's naming rule, not measured.
_H200_NAMES = ("1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb")
H200 = GpuModel(
    key="H200",
    nvml_names=("NVIDIA H200", "NVIDIA H200 NVL"),
    # ⚑ mig-parted/GPU Operator use 0x2335 (H200) and 0x233B (H200 NVL); go-nvml's mock uses 0x2333.
    pci_ids=("0x233510DE", "0x233B10DE"),
    memory_mib=143771,  # ⚑
    generation="hopper",
    memory_slices=8, compute_slices=7,
    profiles=_seven_slice(
        _H200_NAMES,
        sms=(16, 16, 26, 32, 60, 64, 132),
        mems=(16896, 16896, 33792, 33792, 70656, 70656, 143104),
        engines=(
            _engines(1, 0, 1, 1, 0), _engines(1, 0, 1, 1, 1), _engines(1, 0, 1, 1, 0), _engines(2, 0, 2, 2, 0),
            _engines(3, 0, 3, 3, 0), _engines(4, 0, 4, 4, 0), _engines(7, 0, 8, 7, 1),
        ),
        unconfirmed={
            "1g.18gb": ("memory_mib", "engines", "placements"),
            "1g.18gb+me": ("id", "multiprocessors", "memory_mib", "engines", "placements"),
            "1g.35gb": ("id", "multiprocessors", "memory_mib", "engines", "placements"),
            "2g.35gb": ("memory_mib", "engines", "placements"),
            "3g.71gb": ("id", "multiprocessors", "memory_mib", "engines", "placements"),
            "4g.71gb": ("id", "multiprocessors", "memory_mib", "engines", "placements"),
            "7g.141gb": ("memory_mib", "engines", "placements"),
        },
    ),
    unconfirmed=("memory_mib", "pci_ids", "profile ids", "placements"),
)

# --- B200 180GB: names, fractions, CE, counts [UG-prof]; driver R570.133.20+ [UG-start].
# ⚑ SMs are go-nvml mock values (unverified), IDs and placements presumed H100's, MiB chosen to satisfy
# nvlib's naming rule. AWS names the same profiles 1g.47gb/3g.93gb: names come from reported memory.
_B200_NAMES = ("1g.23gb", "1g.23gb+me", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb")
B200 = GpuModel(
    key="B200",
    nvml_names=("NVIDIA B200",),
    pci_ids=("0x290110DE",),  # ⚑ mig-parted's; the go-nvml mock says 0x2B00
    memory_mib=183359,  # ⚑
    generation="blackwell",
    memory_slices=8, compute_slices=7,
    min_driver="570.133.20",
    profiles=_seven_slice(
        _B200_NAMES,
        sms=(18, 18, 18, 36, 54, 72, 126),
        mems=(22528, 22528, 45056, 45056, 90112, 90112, 182272),
        engines=(
            _engines(1, 0, 2, 1, 0), _engines(1, 0, 2, 1, 1), _engines(1, 0, 2, 1, 0), _engines(2, 0, 3, 2, 0),
            _engines(3, 0, 6, 3, 0), _engines(4, 0, 8, 4, 0), _engines(7, 0, 16, 7, 1),
        ),
        unconfirmed=_all(("id", "multiprocessors", "memory_mib", "engines except copy", "placements"), _B200_NAMES),
    ),
    unconfirmed=("memory_mib", "pci_ids", "profile ids", "multiprocessors", "placements"),
)

# --- GPUs without MIG --------------------------------------------------------------------------------
L4 = GpuModel(
    key="L4", nvml_names=("NVIDIA L4",),
    pci_ids=("0x27B810DE",),  # ⚑ not in the facts
    memory_mib=23034,  # ⚑ not in the facts
    generation="ada", unconfirmed=("pci_ids", "memory_mib"),
)
L40S = GpuModel(
    key="L40S", nvml_names=("NVIDIA L40S",),
    pci_ids=("0x26B910DE",),  # ⚑ not in the facts
    memory_mib=46068,  # ⚑ not in the facts
    generation="ada", unconfirmed=("pci_ids", "memory_mib"),
)

MODELS = {m.key: m for m in (A100_SXM4_40GB, A100_SXM4_80GB, A30, H100_80GB_HBM3, H100_NVL, H200, B200, L4, L40S)}


# ---------------------------------------------------------------------------------------------
# Model resolution
# ---------------------------------------------------------------------------------------------
def _norm(name: str) -> str:
    s = re.sub(r"[\s_]+", "-", str(name).strip()).upper()
    if s.startswith("NVIDIA-"):
        s = s[len("NVIDIA-"):]
    # A GFD single-strategy product label carries a "-MIG-<profile>" suffix.
    s = re.sub(r"-MIG-.*$", "", s)
    return s


def _norm_pci(value: str) -> str | None:
    m = re.match(r"^0x([0-9a-fA-F]{4})([0-9a-fA-F]{4})?$", str(value).strip())
    if not m:
        return None
    return "0x" + m.group(1).upper() + (m.group(2) or "10DE").upper()


def resolve_model(gpu) -> GpuModel:
    """GpuModel from a model key, an NVML product name (with or without "NVIDIA "), a GFD product
    label (spaces replaced by '-') or a PCI device id ("0x233010DE" or "0x2330")."""
    if isinstance(gpu, GpuModel):
        return gpu
    if gpu is None or str(gpu).strip() == "":
        raise MigError("GPU model is empty; give an NVML name such as 'NVIDIA H100 80GB HBM3', a GFD product "
                       "label or a PCI device id", reason="unknown_gpu")
    pci = _norm_pci(gpu)
    wanted = _norm(gpu)
    for m in MODELS.values():
        if (pci and pci in m.pci_ids) or wanted == _norm(m.key) or any(wanted == _norm(n) for n in m.nvml_names):
            return m
    known = sorted({n for m in MODELS.values() for n in m.nvml_names})
    raise MigError("unknown GPU model '%s'; known models: %s" % (gpu, ", ".join(known)), reason="unknown_gpu")


def find_model(gpu) -> GpuModel | None:
    try:
        return resolve_model(gpu)
    except MigError:
        return None


def resource_name(profile: str) -> str:
    """Extended resource a MIG device gets under the device plugin's mixed strategy (facts §5)."""
    return RESOURCE_PREFIX + profile.replace("+", ".")


def derive_profile_name(slices: int, memory_mib: int, total_mib: int, suffix: str = "") -> str:
    """go-nvlib's naming rule (facts §1): gb = round(ceil(8*mem/total)/8 * ceil(total GiB)), halves up."""
    eighths = math.ceil(8 * memory_mib / total_mib)
    gb = math.floor(eighths / 8 * math.ceil(total_mib / 1024) + 0.5)
    return "%dg.%dgb%s" % (slices, gb, suffix)


def _version_tuple(v) -> tuple:
    parts = []
    for p in str(v).split("."):
        m = re.match(r"\d+", p)
        parts.append(int(m.group(0)) if m else 0)
    return tuple(parts)


def driver_at_least(have, need) -> bool:
    return _version_tuple(have) >= _version_tuple(need)


# ---------------------------------------------------------------------------------------------
# mig_devices validation
# ---------------------------------------------------------------------------------------------
def parse_mig_devices(mig_devices, where: str = "mig-devices") -> dict:
    """Validate a profile -> count mapping in mig-parted syntax; returns it without zero counts.

    Counts are integers >= 0 and not all zero (an empty mapping is fine: MIG on, no devices)."""
    if mig_devices is None:
        return {}
    if not isinstance(mig_devices, dict):
        raise MigError("%s must be a mapping of profile to count, got %s" % (where, type(mig_devices).__name__),
                       reason="syntax")
    out = {}
    for name, count in mig_devices.items():
        if not isinstance(name, str) or not PROFILE_RE.match(name):
            raise MigError("%s: '%s' is not a MIG profile name (expected e.g. '1g.10gb', '3g.40gb' or "
                           "'1g.10gb+me')" % (where, name), reason="syntax", profile=str(name))
        if isinstance(count, bool):
            raise MigError("%s: count for '%s' must be an integer, got %r" % (where, name, count),
                           reason="syntax", profile=name)
        if isinstance(count, str) and count.strip().isdigit():
            count = int(count)
        if not isinstance(count, int):
            raise MigError("%s: count for '%s' must be an integer, got %r" % (where, name, count),
                           reason="syntax", profile=name)
        if count < 0:
            raise MigError("%s: count for '%s' cannot be negative (%d)" % (where, name, count),
                           reason="syntax", profile=name)
        if count:
            out[name] = count
    if mig_devices and not out:
        raise MigError("%s: counts are all zero; use {} for MIG enabled without devices" % where, reason="syntax")
    return out


def _models_with(profile: str) -> list[str]:
    return [m.key for m in MODELS.values() if m.profile(profile)]


def validate_layout(gpu, mig_devices, driver_version: str | None = None) -> dict:
    """Reasons a layout cannot exist that need no search: unknown profile, counts, media engines,
    total memory slices, driver minimums. Returns the cleaned mapping."""
    model = resolve_model(gpu)
    wanted = parse_mig_devices(mig_devices)
    if not model.mig_capable:
        if wanted:
            raise MigError("%s does not support MIG; it cannot hold %s" % (model.key, ", ".join(sorted(wanted))),
                           reason="not_mig_capable", profile=sorted(wanted)[0])
        return wanted
    for name, count in wanted.items():
        m = PROFILE_RE.match(name)
        if m.group("c") and int(m.group("c")) != int(m.group("g")):
            raise MigError("profile '%s' is a compute-instance profile (fewer compute slices than its GPU "
                           "instance); only whole-instance profiles are supported, e.g. '%sg.%sgb'"
                           % (name, m.group("g"), m.group("gb")), reason="unsupported", profile=name)
        prof = model.profile(name)
        if prof is None:
            others = _models_with(name)
            where = ("; it exists on: %s" % ", ".join(others)) if others else "; no known GPU has it"
            raise MigError("profile '%s' does not exist on %s (its profiles: %s)%s"
                           % (name, model.key, ", ".join(model.profile_names), where),
                           reason="unknown_profile", profile=name)
        if count > prof.instance_count:
            raise MigError("profile '%s' asks for %d instances but %s allows at most %d"
                           % (name, count, model.key, prof.instance_count), reason="over_count", profile=name)
        if driver_version:
            need = prof.min_driver or model.min_driver
            if need and not driver_at_least(driver_version, need):
                raise MigError("profile '%s' on %s needs NVIDIA driver %s or later; this host has %s"
                               % (name, model.key, need, driver_version), reason="driver", profile=name)
    # ⚑ Inferred (facts §2): the JPEG/OFA media engines exist once per GPU, so at most one +me GI.
    me = [n for n in wanted if model.profile(n).media_extension]
    if sum(wanted[n] for n in me) > 1:
        raise MigError("profiles %s: at most one '+me' instance fits on %s (the media engines exist once "
                       "per GPU)" % (", ".join(sorted(me)), model.key), reason="media_engines", profile=sorted(me)[0])
    used = sum(model.profile(n).size * c for n, c in wanted.items())
    if used > model.memory_slices:
        biggest = max(wanted, key=lambda n: model.profile(n).size)
        raise MigError("no room: %s needs %d memory slices but %s has %d"
                       % (_fmt(wanted), used, model.key, model.memory_slices), reason="no_room", profile=biggest)
    # 4g + 3g on A100 needs R510+ [UG-con].
    if driver_version and model.generation == "ampere" and not driver_at_least(driver_version, "510"):
        if any(model.profile(n).slices == 4 for n in wanted) and any(model.profile(n).slices == 3 for n in wanted):
            raise MigError("4g + 3g together need NVIDIA driver R510 or later; this host has %s" % driver_version,
                           reason="driver", profile=[n for n in wanted if model.profile(n).slices == 3][0])
    return wanted


def _fmt(wanted: dict) -> str:
    return "{" + ", ".join("%s: %d" % (n, c) for n, c in sorted(wanted.items())) + "}"


# ---------------------------------------------------------------------------------------------
# Placement solver
# ---------------------------------------------------------------------------------------------
def _mask(start: int, size: int) -> int:
    return ((1 << size) - 1) << start


def _order(model: GpuModel, wanted: dict) -> list:
    # Most constrained first: big placements, then few legal starts.
    items = []
    for name in sorted(wanted, key=lambda n: (-model.profile(n).size, len(model.profile(n).starts), n)):
        items.extend([model.profile(name)] * wanted[name])
    return items


def _backtrack(model: GpuModel, items: list, occupied: int, compute_used: int) -> list | None:
    out: list = []

    def rec(i: int, occ: int, comp: int, prev_start: int) -> bool:
        if i == len(items):
            return True
        prof = items[i]
        # Multi-slice instances try their highest legal start first and single slices their
        # lowest, so the big ones sit at the top and the free slices stay together at the bottom:
        # adding one more 1g later is then a single create, not a re-layout (docs/benchmarks.md).
        high_first = prof.size > 1
        same = i > 0 and items[i - 1] is prof
        for s in (sorted(prof.starts, reverse=True) if high_first else prof.starts):
            if same and (s >= prev_start if high_first else s <= prev_start):
                continue  # same profile: one direction only, avoids trying permutations
            mk = _mask(s, prof.size)
            if occ & mk or comp + prof.slices > model.compute_slices:
                continue
            out.append((prof, s))
            if rec(i + 1, occ | mk, comp + prof.slices, s):
                return True
            out.pop()
        return False

    return list(out) if rec(0, occupied, compute_used, -1) else None


def _keep_candidates(model: GpuModel, wanted: dict, keep) -> list:
    cands = []
    for inst in keep or []:
        prof = model.profile(inst.get("profile"))
        if prof is None or prof.name not in wanted:
            continue
        start, size = inst.get("start"), inst.get("size", prof.size)
        if start in prof.starts and size == prof.size:
            cands.append((prof, start))
    return cands


def solve(gpu, mig_devices, keep=None, driver_version: str | None = None) -> list[dict]:
    """Explicit placements for a layout: a list of {profile, start, size} sorted by start.

    ``keep`` lists existing instances ({profile, start, size}); as many of them as possible stay
    where they are. The search backtracks over NVML's legal starts, so layouts that first-fit
    misses (3g + 4x1g needs the 3g at slot 4) are found. Raises MigError naming the profile and
    the reason when the layout cannot exist."""
    model = resolve_model(gpu)
    wanted = validate_layout(model, mig_devices, driver_version)
    if not wanted:
        return []
    cands = _keep_candidates(model, wanted, keep)

    if _backtrack(model, _order(model, wanted), 0, 0) is None:
        _raise_no_room(model, wanted)

    # Largest kept subset first; within a size, candidates in the order given.
    for k in range(len(cands), -1, -1):
        for subset in itertools.combinations(cands, k):
            counts: dict = {}
            occ = comp = 0
            ok = True
            for prof, s in subset:
                counts[prof.name] = counts.get(prof.name, 0) + 1
                mk = _mask(s, prof.size)
                if counts[prof.name] > wanted[prof.name] or occ & mk:
                    ok = False
                    break
                occ |= mk
                comp += prof.slices
            if not ok:
                continue
            rest = {n: c - counts.get(n, 0) for n, c in wanted.items() if c - counts.get(n, 0) > 0}
            placed = _backtrack(model, _order(model, rest), occ, comp)
            if placed is not None:
                allp = list(subset) + placed
                return [{"profile": p.name, "start": s, "size": p.size} for p, s in sorted(allp, key=lambda x: x[1])]
    _raise_no_room(model, wanted)  # pragma: no cover - the empty subset is the feasibility check above


def _raise_no_room(model: GpuModel, wanted: dict):
    # Name the first profile (largest first) whose addition makes the layout impossible.
    acc: dict = {}
    for prof in _order(model, wanted):
        acc[prof.name] = acc.get(prof.name, 0) + 1
        if _backtrack(model, _order(model, acc), 0, 0) is None:
            prev = dict(acc)
            prev[prof.name] -= 1
            prev = {n: c for n, c in prev.items() if c}
            raise MigError(
                "no room: profile '%s' cannot be placed next to %s on %s (legal starts for %s: %s, size %d); "
                "layout %s has no non-overlapping placement"
                % (prof.name, _fmt(prev) if prev else "nothing", model.key, prof.name,
                   list(prof.starts), prof.size, _fmt(wanted)),
                reason="no_room", profile=prof.name)
    raise MigError("no room for %s on %s" % (_fmt(wanted), model.key), reason="no_room")  # pragma: no cover


def max_count(gpu, profile: str) -> int:
    """How many instances of one profile fit on an empty GPU (count limit and placements)."""
    model = resolve_model(gpu)
    prof = model.profile(profile)
    if prof is None:
        return 0
    n = 0
    for k in range(1, prof.instance_count + 1):
        try:
            solve(model, {profile: k})
            n = k
        except MigError:
            break
    return n


# ---------------------------------------------------------------------------------------------
# Plan: minimal diff between what exists and what should
# ---------------------------------------------------------------------------------------------
def _gi_complete(inst: dict) -> bool | None:
    """True when the GI holds exactly one compute instance spanning it; None when it has none."""
    cis = inst.get("compute_instances")
    if cis is None:
        return True  # caller did not report CIs: treat as whole
    if not cis:
        return None
    slices = inst.get("slices")
    return len(cis) == 1 and (slices is None or cis[0].get("slices") in (None, slices))


def plan(current_instances, desired_placements) -> dict:
    """Which GPU instances to keep, destroy and create.

    current_instances: [{id, profile, start, size, compute_instances?: [{id, slices}], slices?}]
    desired_placements: [{profile, start, size}] (solve()'s output)
    A GI matches when profile, start and size are equal and it holds one whole compute instance
    (or none yet: then it is kept and listed in ``add_ci``). Everything else is destroyed."""
    remaining = list(desired_placements)
    keep, destroy, add_ci = [], [], []
    for inst in sorted(current_instances, key=lambda i: (i.get("start", 0), i.get("id", 0))):
        match = None
        for d in remaining:
            if d["profile"] == inst.get("profile") and d["start"] == inst.get("start") and d["size"] == inst.get("size"):
                match = d
                break
        complete = _gi_complete(inst)
        if match is not None and complete is not False:
            remaining.remove(match)
            keep.append(inst)
            if complete is None:
                add_ci.append(inst)
        else:
            destroy.append(inst)
    return {"keep": keep, "destroy": destroy, "create": sorted(remaining, key=lambda d: d["start"]), "add_ci": add_ci}


# ---------------------------------------------------------------------------------------------
# mig-parted config files (facts §4)
# ---------------------------------------------------------------------------------------------
_SPEC_KEYS = ("devices", "device-filter", "mig-enabled", "mig-devices")


def parse_mig_parted_config(doc, source: str = "mig-parted config") -> dict:
    """Validate a mig-parted v1 document (already loaded from YAML). Returns
    {config name: [{devices: 'all'|[int], device_filter: [str]|None, mig_enabled: bool, mig_devices: {}}]}.
    Profile names are checked for syntax only here; whether a GPU has them is checked per GPU."""
    if not isinstance(doc, dict):
        raise MigError("%s: the document must be a mapping with 'version' and 'mig-configs', got %s"
                       % (source, type(doc).__name__), reason="config")
    extra = sorted(set(doc) - {"version", "mig-configs"})
    if extra:
        raise MigError("%s: unknown top-level key(s) %s; allowed: version, mig-configs" % (source, ", ".join(map(str, extra))),
                       reason="config")
    if doc.get("version") != "v1":
        raise MigError("%s: 'version' must be 'v1', got %r" % (source, doc.get("version")), reason="config")
    configs = doc.get("mig-configs")
    if not isinstance(configs, dict) or not configs:
        raise MigError("%s: 'mig-configs' must be a non-empty mapping of config name to a list of entries"
                       % source, reason="config")
    out = {}
    for name, entries in configs.items():
        where = "%s: config '%s'" % (source, name)
        if not isinstance(entries, list) or not entries:
            raise MigError("%s must be a non-empty list of entries" % where, reason="config")
        out[str(name)] = [_parse_spec(e, "%s entry %d" % (where, i + 1)) for i, e in enumerate(entries)]
    return out


def _parse_spec(entry, where: str) -> dict:
    if not isinstance(entry, dict):
        raise MigError("%s must be a mapping with devices, mig-enabled and mig-devices" % where, reason="config")
    extra = sorted(set(entry) - set(_SPEC_KEYS))
    if extra:
        raise MigError("%s: unknown field(s) %s; allowed: %s" % (where, ", ".join(map(str, extra)), ", ".join(_SPEC_KEYS)),
                       reason="config")
    if "devices" not in entry:
        raise MigError("%s: field 'devices' is required ('all' or a list of GPU indexes)" % where, reason="config")
    devices = entry["devices"]
    if devices != "all":
        if not isinstance(devices, list) or not devices or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices):
            raise MigError("%s: field 'devices' must be 'all' or a non-empty list of GPU indexes, got %r"
                           % (where, devices), reason="config")
    flt = entry.get("device-filter")
    if flt is not None:
        flist = [flt] if isinstance(flt, str) else flt
        if not isinstance(flist, list) or not flist:
            raise MigError("%s: field 'device-filter' must be a PCI device id string or a list of them, got %r"
                           % (where, flt), reason="config")
        norm = []
        for f in flist:
            n = _norm_pci(f) if isinstance(f, str) else None
            if n is None:
                raise MigError("%s: field 'device-filter' value %r is not a PCI device id like '0x233010DE'"
                               % (where, f), reason="config")
            norm.append(n)
        flt = norm
    if "mig-enabled" not in entry:
        raise MigError("%s: field 'mig-enabled' is required (true or false)" % where, reason="config")
    enabled = entry["mig-enabled"]
    if not isinstance(enabled, bool):
        raise MigError("%s: field 'mig-enabled' must be true or false, got %r" % (where, enabled), reason="config")
    devs = entry.get("mig-devices")
    if enabled:
        if "mig-devices" not in entry:
            raise MigError("%s: field 'mig-devices' is required when 'mig-enabled' is true ({} for none)" % where,
                           reason="config")
        devs = parse_mig_devices(devs, where="%s: field 'mig-devices'" % where)
    else:
        if devs:
            raise MigError("%s: field 'mig-devices' must be empty when 'mig-enabled' is false" % where, reason="config")
        devs = {}
    return {"devices": devices, "device_filter": flt, "mig_enabled": enabled, "mig_devices": devs}


def load_mig_parted_file(path: str) -> dict:
    """Read and validate a mig-parted YAML file; malformed YAML is a MigError naming the file."""
    import yaml  # PyYAML ships with ansible-core; imported here so the tables need nothing

    try:
        with open(path, "r", encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as e:
        raise MigError("cannot read mig-parted config file %s: %s" % (path, e.strerror or e), reason="config")
    except yaml.YAMLError as e:
        raise MigError("mig-parted config file %s is not valid YAML: %s" % (path, e), reason="config")
    return parse_mig_parted_config(doc, source="mig-parted config file %s" % path)


def select_config(configs: dict, name: str, gpus: list, source: str = "mig-parted config") -> dict:
    """Desired state per GPU index for one named config.

    gpus: [{index, pci_device_id}]. Returns {index: {mig_enabled, mig_devices, entry}} for the GPUs
    an entry selects; GPUs no entry selects are absent (left as they are)."""
    if name not in configs:
        raise MigError("%s: unknown config name '%s'; available: %s" % (source, name, ", ".join(sorted(configs))),
                       reason="config")
    by_index = {g["index"]: g for g in gpus}
    out: dict = {}
    for n, spec in enumerate(configs[name]):
        where = "%s: config '%s' entry %d" % (source, name, n + 1)
        if spec["devices"] == "all":
            idxs = sorted(by_index)
        else:
            bad = [d for d in spec["devices"] if d not in by_index]
            if bad:
                raise MigError("%s: device index %s out of range; this host has %d GPU(s) (indexes %s)"
                               % (where, ", ".join(map(str, bad)), len(gpus),
                                  ("0-%d" % (len(gpus) - 1)) if gpus else "none"), reason="config")
            idxs = spec["devices"]
        for i in idxs:
            if spec["device_filter"]:
                pci = _norm_pci(by_index[i].get("pci_device_id") or "")
                if pci not in spec["device_filter"]:
                    continue
            if i in out:
                raise MigError("%s: GPU %d is already selected by entry %d; entries must not overlap"
                               % (where, i, out[i]["entry"]), reason="config")
            out[i] = {"mig_enabled": spec["mig_enabled"], "mig_devices": dict(spec["mig_devices"]), "entry": n + 1}
    return out


# ---------------------------------------------------------------------------------------------
# Named presets (mig-parted's config-default.yaml conventions, facts §4)
# ---------------------------------------------------------------------------------------------
def _balanced(model: GpuModel) -> dict:
    # [parted builder/balanced.go]: 2x1g + 1x2g + 1x3g on 7-slice GPUs, 2x1g + 1x2g on 4-slice GPUs,
    # using the plain (index 1_SLICE/2_SLICE/3_SLICE) profiles.
    one = model.profile_by_index(GI_PROFILE_1_SLICE)
    two = model.profile_by_index(GI_PROFILE_2_SLICE)
    three = model.profile_by_index(GI_PROFILE_3_SLICE)
    out = {one.name: 2, two.name: 1}
    if model.compute_slices == 7 and three is not None:
        out[three.name] = 1
    return out


def preset_names(gpu) -> list[str]:
    model = resolve_model(gpu)
    if not model.mig_capable:
        return ["all-disabled"]
    return ["all-disabled", "all-enabled", "all-balanced"] + ["all-" + p.name.replace("+", ".") for p in model.profiles]


def preset(gpu, name: str) -> dict:
    """{mig_enabled, mig_devices} for a named preset on one GPU model.

    all-<profile> fills the GPU with that profile, so all-1g.10gb is 4x (the double-memory profile)
    on an A100-40GB and 7x on an H100-80GB, as in mig-parted."""
    model = resolve_model(gpu)
    if name == "all-disabled":
        return {"mig_enabled": False, "mig_devices": {}}
    if not model.mig_capable:
        raise MigError("preset '%s': %s does not support MIG; the only preset for it is all-disabled"
                       % (name, model.key), reason="not_mig_capable")
    if name == "all-enabled":
        return {"mig_enabled": True, "mig_devices": {}}
    if name == "all-balanced":
        return {"mig_enabled": True, "mig_devices": _balanced(model)}
    for p in model.profiles:
        if name == "all-" + p.name.replace("+", "."):
            return {"mig_enabled": True, "mig_devices": {p.name: max_count(model, p.name)}}
    raise MigError("unknown preset '%s' for %s; available: %s" % (name, model.key, ", ".join(preset_names(model))),
                   reason="config")


# ---------------------------------------------------------------------------------------------
# Host-level planning from nvml.host_facts() output (still pure: facts in, plan out)
# ---------------------------------------------------------------------------------------------
def model_from_facts(gpu: dict) -> GpuModel | None:
    """The model to plan with for one GPU's facts: NVML's own profiles and placements when MIG is on
    (the run-time truth), else the static table for its name or PCI device id."""
    static = find_model(gpu.get("name")) or find_model(gpu.get("pci_device_id") or "")
    profiles = []
    for p in gpu.get("mig_profiles") or []:
        pls = p.get("placements") or []
        if not pls:
            continue
        sp = static.profile(p["name"]) if static else None
        profiles.append(Profile(
            name=p["name"], index=p["index"], id=p["id"], instance_count=p["instance_count"],
            multiprocessors=p.get("multiprocessors", 0), memory_mib=p.get("memory_mib", 0), slices=p["slices"],
            size=pls[0]["size"], starts=tuple(sorted(pl["start"] for pl in pls)), engines=dict(p.get("engines") or {}),
            min_driver=sp.min_driver if sp else None,
        ))
    if not profiles:
        return static
    return GpuModel(
        key=static.key if static else _norm(gpu.get("name") or "unknown"),
        nvml_names=(gpu.get("name"),), pci_ids=(gpu.get("pci_device_id"),),
        memory_mib=gpu.get("memory_total_mib") or 0,
        generation=static.generation if static else "unknown",
        profiles=tuple(profiles),
        memory_slices=max(p.starts[-1] + p.size for p in profiles),
        compute_slices=max(p.slices for p in profiles),
        min_driver=static.min_driver if static else None,
    )


def _label(gpu: dict) -> str:
    return "GPU %s (%s)" % (gpu.get("index"), gpu.get("name") or "unknown")


def desired_state(facts: dict, preset_name: str | None = None, mig_devices=None, gpus=None,
                  configs: dict | None = None, config_name: str | None = None,
                  source: str = "mig-parted config") -> dict:
    """Desired {mig_enabled, mig_devices} per GPU index from exactly one of: a named preset, an inline
    mig_devices mapping (MIG on), or a parsed mig-parted document plus a config name."""
    host = facts.get("gpus") or []
    indexes = [g["index"] for g in host]
    if gpus is not None:
        bad = [i for i in gpus if i not in indexes]
        if bad:
            raise MigError("gpus: index %s out of range; this host has %d GPU(s)%s"
                           % (", ".join(map(str, bad)), len(host), (" (0-%d)" % (len(host) - 1)) if host else ""),
                           reason="config")
        selected = [g for g in host if g["index"] in gpus]
    else:
        selected = list(host)
    out: dict = {}
    if configs is not None:
        brief = [{"index": g["index"], "pci_device_id": g.get("pci_device_id")} for g in host]
        sel = select_config(configs, config_name, brief, source=source)
        for i, want in sel.items():
            out[i] = {"mig_enabled": want["mig_enabled"], "mig_devices": want["mig_devices"],
                      "source": "%s config '%s' entry %d" % (source, config_name, want["entry"])}
        return out
    if preset_name is not None:
        for g in selected:
            model = model_from_facts(g)
            if model is None:
                if preset_name == "all-disabled":
                    out[g["index"]] = {"mig_enabled": False, "mig_devices": {}, "source": "preset all-disabled"}
                    continue
                raise MigError("%s: unknown GPU model, so preset '%s' cannot be resolved; known models: %s"
                               % (_label(g), preset_name, ", ".join(MODELS)), reason="unknown_gpu")
            try:
                want = preset(model, preset_name)
            except MigError as e:
                raise MigError("%s: %s" % (_label(g), e), reason=e.reason, profile=e.profile)
            out[g["index"]] = dict(want, source="preset %s" % preset_name)
        return out
    devs = parse_mig_devices(mig_devices, where="mig_devices")
    for g in selected:
        out[g["index"]] = {"mig_enabled": True, "mig_devices": dict(devs), "source": "mig_devices"}
    return out


def _inst(gi: dict) -> dict:
    return {"id": gi.get("id"), "profile": gi.get("profile"), "start": gi.get("start"), "size": gi.get("size")}


def plan_gpu(gpu: dict, want: dict, driver_version: str | None = None) -> dict:
    """Plan one GPU. Raises MigError (prefixed with the GPU) when the desired state cannot exist."""
    label = _label(gpu)
    idx = gpu["index"]
    out = {
        "index": idx, "name": gpu.get("name"), "uuid": gpu.get("uuid"), "source": want.get("source"),
        "desired_enabled": bool(want["mig_enabled"]), "desired_devices": dict(want.get("mig_devices") or {}),
        "mig_current": gpu.get("mig_current"), "mig_pending": gpu.get("mig_pending"),
        "set_mode": None, "layout_now": False, "placements": [],
        "keep": [], "destroy": [], "create": [], "add_ci": [],
        "reset_required": False,
        "processes": None if gpu.get("processes", []) is None else list(gpu.get("processes") or []),
    }
    if not gpu.get("mig_capable"):
        if want["mig_enabled"]:
            raise MigError("%s does not support MIG; it can only be 'mig-enabled: false' (all-disabled)" % label,
                           reason="not_mig_capable")
        out["changed"] = False
        return out
    cur, pend = bool(gpu.get("mig_current")), bool(gpu.get("mig_pending"))
    current = list(gpu.get("gpu_instances") or [])
    if want["mig_enabled"]:
        model = model_from_facts(gpu)
        if model is None:
            raise MigError("%s: unknown GPU model and MIG is off, so its profiles cannot be read from NVML; "
                           "enable MIG first (preset all-enabled) or use a known model (%s)"
                           % (label, ", ".join(MODELS)), reason="unknown_gpu")
        # Instances a process runs on come first, so the solver prefers to keep them (with force).
        busy = {p.get("gpu_instance_id") for p in gpu.get("processes") or []}
        keep = sorted(current, key=lambda gi: gi.get("id") not in busy) if cur else []
        try:
            placements = solve(model, want.get("mig_devices") or {}, keep=keep, driver_version=driver_version)
        except MigError as e:
            raise MigError("%s: %s" % (label, e), reason=e.reason, profile=e.profile)
        for p in placements:
            prof = model.profile(p["profile"])
            p["profile_id"], p["slices"] = prof.id, prof.slices
        out["placements"] = placements
        if not pend:
            out["set_mode"] = 1
        if cur:
            out["layout_now"] = True
            d = plan(current, placements)
            out.update(keep=d["keep"], destroy=d["destroy"], create=d["create"], add_ci=d["add_ci"])
            # current on, pending off (a disable waits for a reset): set_mode 1 above cancels it.
        else:
            # Hopper+ apply a mode change at once, Ampere after a reset (facts §0.4).
            # An enable that is already pending did not apply at once, so it waits for a reset too.
            applies_now = not pend and not model.mig_mode_needs_reset
            out["layout_now"] = applies_now
            out["create"] = list(placements) if applies_now else []
            out["reset_required"] = not applies_now
    else:
        if cur and pend:
            out["set_mode"] = 0
            out["destroy"] = list(current)  # instances must go before MIG can be turned off
            model = model_from_facts(gpu)
            out["reset_required"] = bool(model and model.mig_mode_needs_reset)
        elif cur and not pend:
            out["reset_required"] = True   # disable already pending; a reset applies it
        elif not cur and pend:
            out["set_mode"] = 0            # cancel a pending enable
    out["changed"] = bool(out["set_mode"] is not None or out["destroy"] or out["create"] or out["add_ci"])
    return out


def plan_host(facts: dict, desired: dict) -> list:
    """Plan every GPU named in ``desired``; every problem on every GPU is reported at once."""
    by_index = {g["index"]: g for g in facts.get("gpus") or []}
    plans, errors = [], []
    for idx in sorted(desired):
        if idx not in by_index:
            errors.append(MigError("GPU index %s out of range; this host has %d GPU(s)" % (idx, len(by_index)),
                                   reason="config"))
            continue
        try:
            plans.append(plan_gpu(by_index[idx], desired[idx], facts.get("driver_version")))
        except MigError as e:
            errors.append(e)
    if errors:
        reasons = {e.reason for e in errors}
        profile = next((e.profile for e in errors if e.profile), None)
        raise MigError("; ".join(str(e) for e in errors), reason=reasons.pop() if len(reasons) == 1 else "invalid",
                       profile=profile)
    return plans


def layout_summary(instances) -> list:
    """Stable human-readable layout for diffs: ['3g.40gb@0:4', '1g.10gb@4:1', ...]."""
    return ["%s@%s:%s" % (i.get("profile"), i.get("start"), i.get("size"))
            for i in sorted(instances, key=lambda x: (x.get("start", 0), str(x.get("profile"))))]
