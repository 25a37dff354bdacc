#!/usr/bin/env python3
"""Fails when a package in Cargo.lock declares a rust-version above the workspace's.

Usage (from the repository root): cargo metadata --locked --format-version 1 | python3 .ci/msrv-deps.py

What it checks: the workspace declares `rust-version` (the MSRV); every workspace member
declares the same one; and every package in the locked dependency graph, for every target
platform, declares a `rust-version` no higher than it. A package that declares none is
listed but passes: nothing in it says which compiler it needs.

What it does not check: that the code compiles with that compiler. A dependency's declared
rust-version is its authors' claim, and packages without one are taken on trust.
"""

import json
import sys


def version(text):
    """'1.88' or '1.88.0' as a comparable tuple."""
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.load(sys.stdin)
    packages = {p["id"]: p for p in meta["packages"]}
    members = [packages[i] for i in meta["workspace_members"]]
    declared = {p.get("rust_version") for p in members}
    if len(declared) != 1 or None in declared:
        print("workspace members must all declare the workspace's rust-version:", file=sys.stderr)
        for p in members:
            print(f"  {p['name']}: {p.get('rust_version')}", file=sys.stderr)
        return 1
    msrv_text = declared.pop()
    msrv = version(msrv_text)
    too_new = []
    undeclared = []
    for p in sorted(packages.values(), key=lambda p: (p["name"], p["version"])):
        rv = p.get("rust_version")
        if rv is None:
            undeclared.append(f"{p['name']} {p['version']}")
        elif version(rv) > msrv:
            too_new.append(f"{p['name']} {p['version']} needs {rv}")
    if too_new:
        print(f"MSRV {msrv_text}: locked packages that need a newer Rust:")
    else:
        declaring = len(packages) - len(undeclared)
        print(f"MSRV {msrv_text}: {len(packages)} locked packages, {declaring} declare a rust-version, none above it")
    for line in too_new:
        print(f"  {line}")
    if undeclared:
        print(f"declaring none ({len(undeclared)}): {', '.join(undeclared)}")
    return 1 if too_new else 0


if __name__ == "__main__":
    sys.exit(main())
