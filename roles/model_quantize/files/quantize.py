# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entrypoint of the gpuops.llm model_quantize Job: llm-compressor oneshot from a recipe file.

Reads /config/job.json (source, output, method, calibration) and /config/recipe.yaml,
quantizes, saves the compressed checkpoint and tokenizer, and writes a marker with the
recipe hash. Progress goes to stdout; on failure a one-line reason goes to the termination
log, which the role reports.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

CONFIG = os.environ.get("QUANTIZE_CONFIG_DIR", "/config")
TERMINATION_LOG = "/dev/termination-log"


def log(msg):
    sys.stdout.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stdout.flush()


def ensure_packages(packages):
    """Install llm-compressor into a writable prefix unless the image already has it."""
    try:
        import llmcompressor  # noqa: F401
        return
    except ImportError:
        pass
    if not packages:
        raise RuntimeError("llmcompressor is not in the image and model_quantize_pip_packages is empty")
    target = "/tmp/pip"
    log("installing %s" % " ".join(packages))
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--target", target] + packages)
    sys.path.insert(0, target)


def calibration_dataset(cal, tokenizer):
    from datasets import load_dataset

    n = int(cal["num_samples"])
    ds = load_dataset(cal["dataset"], split="%s[:%d]" % (cal.get("split", "train"), n))

    def to_text(example):
        if "messages" in example and getattr(tokenizer, "chat_template", None):
            return {"text": tokenizer.apply_chat_template(example["messages"], tokenize=False)}
        return {"text": example.get("text", "")}

    ds = ds.map(to_text)
    return ds.map(lambda e: tokenizer(e["text"], padding=False, truncation=True,
                                      max_length=int(cal["max_seq_length"]), add_special_tokens=False),
                  remove_columns=ds.column_names)


def main():
    with open(os.path.join(CONFIG, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    recipe = os.path.join(CONFIG, "recipe.yaml")
    ensure_packages(job.get("pip_packages") or [])
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, output = job["source_path"], job["output_path"]
    log("loading %s (revision %s)" % (source, job.get("revision") or "-"))
    kwargs = {"revision": job["revision"]} if job.get("revision") else {}
    model = AutoModelForCausalLM.from_pretrained(source, dtype="auto", **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    cal = job.get("calibration")
    log("quantizing with %s (%s)" % (job["method"], "no calibration" if not cal else
                                     "%s x %s tokens of %s" % (cal["num_samples"], cal["max_seq_length"], cal["dataset"])))
    if cal:
        oneshot(model=model, dataset=calibration_dataset(cal, tokenizer), recipe=recipe,
                max_seq_length=int(cal["max_seq_length"]), num_calibration_samples=int(cal["num_samples"]))
    else:
        oneshot(model=model, recipe=recipe)
    log("saving to %s" % output)
    os.makedirs(output, exist_ok=True)
    model.save_pretrained(output, save_compressed=True)
    tokenizer.save_pretrained(output)
    with open(os.path.join(output, ".gpuops-quantize"), "w", encoding="utf-8") as f:
        f.write(job["recipe_sha256"] + "\n")
    log("done: %s" % job["recipe_sha256"])


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - the reason must reach the termination log
        reason = "%s: %s" % (type(exc).__name__, exc)
        log("failed: " + reason)
        try:
            with open(TERMINATION_LOG, "w", encoding="utf-8") as f:
                f.write(reason[-2000:])
        except OSError:
            pass
        raise
