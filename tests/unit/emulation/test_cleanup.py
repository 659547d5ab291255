"""Cleanup's root-link deletion when the kernel removes the link while we look."""

import errno

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from testbed.emulation import cleanup


class _Links:
    """An IPRoute stand-in: finds the link, then fails its deletion with `code`."""

    def __init__(self, code: int) -> None:
        self.code, self.deleted = code, []

    def __call__(self) -> "_Links":
        return self

    def __enter__(self) -> "_Links":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def link_lookup(self, ifname: str) -> list[int]:
        return [7]

    def link(self, command: str, index: int) -> None:
        self.deleted.append(index)
        raise NetlinkError(self.code, "No such device")


def test_a_link_gone_before_its_deletion_counts_as_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyroute2

    links = _Links(errno.ENODEV)  # its peer's namespace took it with it meanwhile
    monkeypatch.setattr(pyroute2, "IPRoute", links)
    assert cleanup._delete_root_link("tb-x-host") and links.deleted == [7]


def test_any_other_netlink_error_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyroute2

    monkeypatch.setattr(pyroute2, "IPRoute", _Links(errno.EPERM))
    with pytest.raises(NetlinkError):
        cleanup._delete_root_link("tb-x-host")
