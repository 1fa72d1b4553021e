"""Read a raw disk image without mounting it: the MBR with sfdisk, the FAT boot
partition with mtools (`-i image@@offset`), the ext4 root with debugfs
(`image?offset=N`). Used by the image layout test; needs fdisk, mtools, e2fsprogs."""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", LC_ALL="C")


@dataclass(frozen=True)
class Partition:
    start: int      # bytes
    size: int       # bytes
    type: str
    bootable: bool


def partitions(img: Path) -> tuple[str, list[Partition]]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(img)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    return table["label"], [Partition(p["start"] * 512, p["size"] * 512, p["type"],
                                      bool(p.get("bootable", False)))
                            for p in table["partitions"]]


class Image:
    def __init__(self, img: Path) -> None:
        self.img = img
        self.label, self.parts = partitions(img)
        self.fat = f"{img}@@{self.parts[0].start}"
        self.ext = f"{img}?offset={self.parts[1].start}"

    # ---- FAT ----------------------------------------------------------------------
    def fat_names(self) -> list[str]:
        out = subprocess.run(["mdir", "-b", "-i", self.fat, "::/"], capture_output=True,
                             text=True, check=True, env=_ENV).stdout
        return sorted(line.removeprefix("::/") for line in out.splitlines() if line)

    def fat_read(self, name: str) -> str:
        return subprocess.run(["mtype", "-i", self.fat, f"::/{name}"], capture_output=True,
                              text=True, check=True, env=_ENV).stdout

    def fat_label(self) -> str:
        out = subprocess.run(["mlabel", "-s", "-i", self.fat, "::"], capture_output=True,
                             text=True, check=True, env=_ENV).stdout
        return out.split("is", 1)[1].strip()

    # ---- ext4 ---------------------------------------------------------------------
    def _debugfs(self, request: str) -> str:
        proc = subprocess.run(["debugfs", "-R", request, self.ext], capture_output=True,
                              text=True, env=_ENV)
        return proc.stdout

    def ext_label(self) -> str:
        out = subprocess.run(["dumpe2fs", "-h", self.ext], capture_output=True, text=True,
                             env=_ENV).stdout
        return re.search(r"^Filesystem volume name:\s*(\S*)", out, re.M).group(1)

    def read(self, path: str) -> str:
        return self._debugfs(f"cat {path}")

    def stat(self, path: str) -> dict[str, str] | None:
        """{'type': 'regular'|'directory'|'symlink', 'mode': '0644', 'uid', 'gid',
        'target' (symlinks)} or None when the path does not exist."""
        out = self._debugfs(f"stat {path}")
        m = re.search(r"Type: (\w+)\s+Mode:\s+(\d+)", out)
        if not m:
            return None
        owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
        info = {"type": m.group(1), "mode": m.group(2), "uid": owner.group(1),
                "gid": owner.group(2)}
        if info["type"] == "symlink":
            t = re.search(r'Fast link dest: "(.*)"', out)
            info["target"] = t.group(1) if t else self.read(path)
        return info

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def ls(self, path: str) -> list[str]:
        out = self._debugfs(f"ls -p {path}")
        names = [line.split("/")[5] for line in out.splitlines() if line.count("/") >= 6]
        return sorted(n for n in names if n not in (".", ".."))
