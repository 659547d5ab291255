"""gRPC conventions: servers on an ephemeral port, sized message limits, deadlines."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import grpc

DEFAULT_BIND = "127.0.0.1:0"
DEFAULT_DEADLINE_S = 10.0
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_BIND_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})$")

Resp = TypeVar("Resp")
Registrar = Callable[[grpc.Server], None]


def message_size_limit(
    max_tensor_bytes: int, tensors_per_message: int = 2, overhead_bytes: int = 64 * 1024
) -> int:
    """gRPC message limit that fits tensors_per_message tensors of max_tensor_bytes plus headers."""
    if max_tensor_bytes <= 0 or tensors_per_message <= 0 or overhead_bytes < 0:
        raise ValueError(
            f"message_size_limit: got max_tensor_bytes={max_tensor_bytes}, "
            f"tensors_per_message={tensors_per_message}, overhead_bytes={overhead_bytes}; "
            "expected positive sizes"
        )
    return max_tensor_bytes * tensors_per_message + overhead_bytes


def grpc_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel/server options that raise both send and receive limits to max_message_bytes."""
    if not 0 < max_message_bytes < 2**31:
        raise ValueError(
            f"max_message_bytes: got {max_message_bytes}, expected 1 .. {2**31 - 1} (gRPC int32)"
        )
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]


def parse_bind(bind: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:0") into host and port; port 0 means pick a free one."""
    match = _BIND_RE.match(bind)
    if match is None or int(match["port"]) > 65535:
        raise ValueError(f"bind address: got {bind!r}, expected 'host:port' like '127.0.0.1:0'")
    return match["host"], int(match["port"])


@dataclass
class RunningServer:
    """A started gRPC server and the address it actually bound."""

    server: grpc.Server
    host: str
    port: int

    @property
    def address(self) -> str:
        """Where clients connect, e.g. "127.0.0.1:40123"."""
        return f"{self.host}:{self.port}"

    def stop(self, grace_s: float | None = 1.0) -> None:
        """Stop accepting calls, let in-flight ones finish for grace_s, and wait until stopped."""
        self.server.stop(grace_s).wait()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(grace_s=None)


def start_server(
    register: Registrar | Sequence[Registrar],
    *,
    bind: str = DEFAULT_BIND,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_workers: int = 4,
) -> RunningServer:
    """Start an insecure gRPC server on bind after register(server) adds the servicers."""
    host, port = parse_bind(bind)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-server"),
        options=grpc_options(max_message_bytes),
    )
    for add in [register] if callable(register) else register:
        add(server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as err:
        raise OSError(f"cannot bind gRPC server to {bind!r}: {err}") from err
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {bind!r}; expected a free host:port")
    server.start()
    return RunningServer(server=server, host=host, port=bound)


def open_channel(target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.Channel:
    """An insecure channel to target ("host:port") with the same message limits as the servers."""
    parse_bind(target)
    return grpc.insecure_channel(target, options=grpc_options(max_message_bytes))


def wait_ready(channel: grpc.Channel, timeout_s: float, target: str = "channel") -> None:
    """Block until the channel is connected; raise TimeoutError naming target after timeout_s."""
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError as err:
        raise TimeoutError(f"{target} not ready within {timeout_s} s") from err


def call_with_deadline(
    method: Callable[..., Resp],
    request: Any,
    deadline_s: float = DEFAULT_DEADLINE_S,
    *,
    wait_for_ready: bool = False,
) -> Resp:
    """Call a unary stub method with a deadline; every RPC in the testbed goes through this.

    wait_for_ready=True queues the call until the server is reachable (within the deadline)
    instead of failing fast with UNAVAILABLE; grpc.RpcError propagates with its status code.
    """
    if not (math.isfinite(deadline_s) and deadline_s > 0):
        raise ValueError(f"deadline_s: got {deadline_s}, expected a positive number of seconds")
    return method(request, timeout=deadline_s, wait_for_ready=wait_for_ready)


def invalid_argument_on(
    *errors: type[Exception],
) -> Callable[[Callable[..., Resp]], Callable[..., Resp]]:
    """Decorate a servicer method so that errors abort the RPC with INVALID_ARGUMENT.

    The server keeps serving; the client sees the exception's message as the status details.
    """
    if not errors:
        raise ValueError("invalid_argument_on: got no exception types, expected at least one")

    def decorate(method: Callable[..., Resp]) -> Callable[..., Resp]:
        @functools.wraps(method)
        def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Resp:
            try:
                return method(self, request, context)
            except errors as err:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
                raise AssertionError("unreachable: context.abort raises") from err

        return wrapper

    return decorate
