"""A progress bar for training loops: iterations, it/s and the latest test accuracy."""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainingProgress:
    """Context manager around rich's Progress; `update(step, it_s, acc)` after each logged step."""

    def __init__(self, title: str, total: int, enabled: bool = True) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[it_s]:.1f} it/s"),
            TextColumn("test acc {task.fields[acc]}"),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self._task = self._progress.add_task(title, total=total, it_s=0.0, acc="-")

    def __enter__(self) -> TrainingProgress:
        self._progress.start()
        return self

    def update(self, step: int, it_s: float, acc: float | None = None) -> None:
        fields: dict[str, object] = {"it_s": it_s}
        if acc is not None:
            fields["acc"] = f"{acc:.4f}"
        self._progress.update(self._task, completed=step, **fields)

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()
