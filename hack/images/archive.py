"""Write a docker-archive (the `docker save` layout) from layer tarballs and single files, with no builder.

The images with no userland (pause, CoreDNS) and the Debian base root filesystem are made this way: a layer
is either an existing tarball (mmdebstrap's output) or a few files put into a fresh tar here, with fixed
owners, modes, modification times and, where needed, file capabilities (the security.capability xattr, as
`setcap` writes it), so the same inputs give the same image ID. `ctr images import` and `buildah pull`
read the archive's manifest.json and name the image after its RepoTags.

    archive.py --out OUT.tar --tag REF [--layer TAR]... [--file SRC:DEST[:MODE[:CAPS]]]...
               [--config JSON]   # image config: Entrypoint, Cmd, Env, User, WorkingDir, ExposedPorts, Labels

Run with any Python 3.11 (stdlib only).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import struct
import tarfile
import tempfile
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
#: Linux capability numbers a file may carry here (include/uapi/linux/capability.h).
CAPABILITIES = {"cap_net_bind_service": 10}
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001


def file_capability(names: str) -> bytes:
    """The security.capability value of `setcap NAMES=+ep` (struct vfs_cap_data, revision 2)."""
    permitted = 0
    for name in names.split(","):
        permitted |= 1 << CAPABILITIES[name]
    return struct.pack(
        "<IIIII", VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, permitted & 0xFFFFFFFF, 0, permitted >> 32, 0
    )


def files_layer(specs: list[str], out: Path) -> None:
    """A layer with each SRC at DEST (owner root, MODE octal, default 0755) and its parent directories."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for spec in specs:
            src, dest, *rest = spec.split(":")
            mode = int(rest[0], 8) if rest and rest[0] else 0o755
            caps = rest[1] if len(rest) > 1 else ""
            parts = dest.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in seen:
                    seen.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data = Path(src).read_bytes()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), mode
            if caps:
                # PAX records carry xattrs; containerd and containers/storage apply SCHILY.xattr.* on unpack.
                info.pax_headers = {
                    "SCHILY.xattr.security.capability": file_capability(caps).decode("latin-1")
                }
            tar.addfile(info, io.BytesIO(data))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_archive(out: Path, tag: str, layers: list[Path], config: dict[str, Any]) -> None:
    diff_ids = [sha256_file(layer) for layer in layers]
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": "hack/images/archive.py"} for _ in layers
        ],
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{d}/layer.tar" for d in diff_ids]}]
    fd, partial = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    os.close(fd)
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for digest, layer in zip(diff_ids, layers, strict=True):
                info = tarfile.TarInfo(f"{digest}/layer.tar")
                info.size, info.mode = layer.stat().st_size, 0o644
                with layer.open("rb") as handle:
                    tar.addfile(info, handle)
            for name, data in ((config_name, config_bytes), ("manifest.json", json.dumps(manifest).encode())):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        os.chmod(partial, 0o644)
        os.replace(partial, out)
    finally:
        Path(partial).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--layer", type=Path, action="append", default=[])
    parser.add_argument("--file", action="append", default=[])
    parser.add_argument("--config", default="{}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out.parent) as scratch:
        layers = list(args.layer)
        if args.file:
            layers.append(Path(scratch) / "files.tar")
            files_layer(args.file, layers[-1])
        write_archive(args.out, args.tag, layers, json.loads(args.config))


if __name__ == "__main__":
    main()
