#!/usr/bin/env python3
"""Proves that tools/validate-deploy catches broken deploy assets.

For every entry of tests/deploy/broken/mutations.yaml: copy the assets to a temporary tree,
replace the entry's `from` string (which must occur exactly once) by `to`, run
`tools/validate-deploy --root COPY --only CHECK`, and require that CHECK is reported FAIL.
First the unmodified copy must pass every check the mutations name, so that a failure is the
mutation's doing. Exits 1 when any mutation goes unnoticed or cannot be applied.

usage: tests/deploy/check-mutations.py [--jobs N] [NAME-SUBSTRING...]
"""
import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VALIDATE = os.path.join(REPO, "tools", "validate-deploy")
# What a copy holds: the assets, the workflows, the scripts shellcheck looks at.
COPIED = ["deploy", ".github", "tools", ".ci", "tests/deploy"]
IGNORED = shutil.ignore_patterns("node_modules", "__pycache__")


def make_copy(parent):
    root = tempfile.mkdtemp(prefix="tree-", dir=parent)
    for rel in COPIED:
        src = os.path.join(REPO, rel)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(root, rel), ignore=IGNORED, symlinks=True)
    return root


def validate(root, checks):
    started = time.monotonic()
    proc = subprocess.run([VALIDATE, "--root", root, "--only", ",".join(checks)],
                          capture_output=True, text=True, check=False)
    return proc, time.monotonic() - started


def run_mutation(parent, m):
    root = make_copy(parent)
    path = os.path.join(root, m["file"])
    with open(path, encoding="utf-8") as f:
        text = f.read()
    count = text.count(m["from"])
    if count != 1:
        return False, f"cannot apply: `from` occurs {count} times in {m['file']} (want exactly once)"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(m["from"], m["to"]))
    proc, secs = validate(root, [m["check"]])
    shutil.rmtree(root, ignore_errors=True)
    failed_line = next((l for l in proc.stdout.splitlines() if l.startswith(f"FAIL {m['check']} ")), None)
    if proc.returncode == 1 and failed_line:
        detail = proc.stdout.split(failed_line, 1)[1].strip().splitlines()
        return True, f"caught by {m['check']} in {secs:.1f} s: {detail[0].strip() if detail else ''}"
    return False, f"NOT caught: {m['check']} did not fail (exit {proc.returncode})\n{proc.stdout}{proc.stderr}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    with open(os.path.join(REPO, "tests", "deploy", "broken", "mutations.yaml"), encoding="utf-8") as f:
        mutations = yaml.safe_load(f)
    if args.names:
        mutations = [m for m in mutations if any(n in m["name"] for n in args.names)]
    if not mutations:
        print("no mutations selected")
        return 1

    parent = tempfile.mkdtemp(prefix="tideserve-mutations-")
    try:
        checks = sorted({m["check"] for m in mutations})
        baseline, secs = validate(make_copy(parent), checks)
        if baseline.returncode != 0:
            print(f"baseline: the unmodified copy fails ({secs:.1f} s); fix that first:")
            print(baseline.stdout + baseline.stderr)
            return 1
        print(f"baseline: unmodified copy passes {', '.join(checks)} ({secs:.1f} s)")
        bad = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(run_mutation, parent, m): m for m in mutations}
            for future in concurrent.futures.as_completed(futures):
                m = futures[future]
                ok, message = future.result()
                bad += not ok
                print(f"{'ok  ' if ok else 'MISS'} {m['name']}: {message}")
        print(f"{len(mutations) - bad}/{len(mutations)} broken copies caught")
        return 1 if bad else 0
    finally:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
