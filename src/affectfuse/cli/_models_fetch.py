"""``affectfuse fetch-models NAME...``: download published pretrained affect models and check them.

    affectfuse fetch-models --list                      # the catalogue: name, state, licence, what it outputs
    affectfuse fetch-models hsemotion-enet_b0_8_va_mtl audeering-msp-dim [--force]
    affectfuse fetch-models pyfeat-multitask-v28        # py-feat's AU / emotion / VA model (non-commercial weights)

Models land in ``$AFFECTFUSE_CACHE/models/<name>/``, or ``$AFFECTFUSE_MODELS/<name>/`` when that is set (see
:mod:`affectfuse.extractors._catalogue`). A file whose SHA-256 the catalogue pins is refused unless it matches;
a file at a URL without a pin is fetched only with ``--allow-unverified`` (its SHA-256 recorded, reported as
NOT verified); hub files are compared with the hub's record of them. Without internet the command
fails with one line naming the URL or hub id that could not be reached (exit code 2).
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def _list() -> int:
    from affectfuse.extractors._catalogue import CATALOGUE, is_fetched, read_manifest

    for m in CATALOGUE.values():
        if is_fetched(m.name):
            state = "verified" if read_manifest(m.name).get("verified") else "fetched (NOT verified)"
        else:
            state = "missing"
        src = m.urls[0][0] if m.kind == "url" else f"https://huggingface.co/{m.source} (Hugging Face hub)"
        if m.kind == "url":
            pins = [f"{f}: sha256 {m.pinned(f)} ({m.pin_source_of(f)})" if m.pinned(f)
                    else f"{f}: NOT pinned (no published hash found)" for f in m.files]
        else:
            pins = [f"hub revision {m.revision or 'main (NOT pinned)'}; files checked against the hub's record"]
        print(f"{m.name:30s} {state:22s} extractor {m.extractor}\n    {m.notes}\n    source: {src}"
              + "".join(f"\n    pin: {p}" for p in pins) + f"\n    licence: {m.licence}")
    return 0


def run(args: argparse.Namespace) -> int:
    from affectfuse.extractors._catalogue import CATALOGUE, ModelFetchError, fetch_model, model_dir

    if args.list or not args.names:
        return _list()
    unknown = [n for n in args.names if n not in CATALOGUE]
    if unknown:
        raise KeyError(f"unknown model(s) {', '.join(map(repr, unknown))}; known: {', '.join(CATALOGUE)}")
    failed: list[str] = []
    for name in args.names:
        try:
            man = fetch_model(name, force=args.force, allow_unverified=args.allow_unverified, log_fn=print)
        except ModelFetchError as e:
            failed.append(" ".join(str(e).split()))  # one line, whatever the reason said
            continue
        m = CATALOGUE[name]
        print(f"{name}: in {model_dir(name)}")
        for f, info in man.get("files", {}).items():
            if info.get("verified"):
                why = f" (pin: {info['pin_source']})" if info.get("pin_source") else ""
                print(f"  {f}: sha256 {info['sha256']} matches the pinned hash{why}")
            else:
                hub = " (matches the hub's record of it)" if info.get("hub_record_matches") else ""
                print(f"  {f}: NOT VERIFIED — the catalogue pins no sha256 for it; what came has sha256 "
                      f"{info['sha256']}{hub}")
        note = " — NON-COMMERCIAL use only" if m.non_commercial else ""
        print(f"  licence: {m.licence}{note}")
    if failed:
        raise ModelFetchError("; ".join(failed))
    return 0


def add_parser(sub, name: str) -> None:
    help_text = "download published pretrained affect models (HSEmotion, audEERING, py-feat) and check their hashes"
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("names", nargs="*", metavar="NAME", help="catalogue names (see --list)")
    p.add_argument("--list", action="store_true", help="list the catalogue with each model's state and licence")
    p.add_argument("--force", action="store_true", help="download again even when already fetched")
    p.add_argument("--allow-unverified", action="store_true",
                   help="also fetch files at a URL whose SHA-256 the catalogue does not pin (their hash is recorded "
                        "and they are reported as NOT verified)")
    p.set_defaults(run=run)
